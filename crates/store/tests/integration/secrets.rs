//! Secrets: encrypted, upserted and listed without values; rows of older databases and a
//! store without a key; a create with secrets is one transaction.

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use molecule_store::{NewWorkspace, on_both_backends};

use crate::common::{keyed, named};

on_both_backends!(
    secrets_are_encrypted_upserted_and_listed_without_values,
    secrets_of_older_databases_and_without_a_key,
    create_with_secrets_is_one_transaction,
);

async fn secrets_are_encrypted_upserted_and_listed_without_values(s: TestStore) {
    let store = keyed(&s);
    let id = named(&store, "w").await.id;
    let secrets = store.secrets();
    secrets.set_workspace(id, "B", "bee-value").await.unwrap();
    secrets.set_workspace(id, "A", "first").await.unwrap();
    secrets.set_workspace(id, "A", "second").await.unwrap();
    secrets.set_global("G", "global-value").await.unwrap();
    let (raw, version) = secrets.raw_workspace(id, "A").await.unwrap().unwrap();
    assert_eq!(version, molecule_store::VERSION_AES_GCM);
    assert!(!String::from_utf8_lossy(&raw).contains("second"));
    let (graw, gversion) = secrets.raw_global("G").await.unwrap().unwrap();
    assert_eq!(gversion, molecule_store::VERSION_AES_GCM);
    assert!(!String::from_utf8_lossy(&graw).contains("global-value"));
    let listed: Vec<String> = secrets
        .list_workspace(id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(listed, ["A", "B"]);
    assert_eq!(
        secrets
            .get_workspace(id, "A")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "second"
    );
    let values: Vec<(String, String)> = secrets
        .workspace_values(id)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap().into_exposed()))
        .collect();
    assert_eq!(
        values,
        [
            ("A".into(), "second".into()),
            ("B".into(), "bee-value".into())
        ]
    );
    assert_eq!(secrets.workspaces_using_global("G").await.unwrap(), [id]);
    assert!(
        secrets
            .workspaces_using_global("A")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(secrets.delete_workspace(id, "A").await.unwrap());
    assert!(!secrets.delete_workspace(id, "A").await.unwrap());
    assert!(secrets.delete_global("G").await.unwrap());
    assert!(secrets.list_global().await.unwrap().is_empty());
    // Purge removes a workspace's secrets with it.
    store.workspaces().purge(&[id]).await.unwrap();
    assert!(secrets.list_workspace(id).await.unwrap().is_empty());
}

async fn secrets_of_older_databases_and_without_a_key(s: TestStore) {
    let id = named(&s, "w").await.id;
    // No key: plaintext, version 0.
    s.secrets().set_workspace(id, "P", "plain").await.unwrap();
    let (raw, version) = s.secrets().raw_workspace(id, "P").await.unwrap().unwrap();
    assert_eq!((raw.as_slice(), version), (&b"plain"[..], 0));
    // A key loaded later still reads version-0 rows, and writes version 1.
    let store = keyed(&s);
    assert_eq!(
        store
            .secrets()
            .get_workspace(id, "P")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "plain"
    );
    store.secrets().set_workspace(id, "E", "enc").await.unwrap();
    // Without the key, version 1 cannot be read; an unknown version never.
    assert!(matches!(
        s.secrets().get_workspace(id, "E").await,
        Err(molecule_store::StoreError::Cipher(
            molecule_store::CipherError::NoKey
        ))
    ));
    store
        .secrets()
        .put_raw_workspace(id, "F", b"future", 7)
        .await
        .unwrap();
    assert!(matches!(
        store.secrets().get_workspace(id, "F").await,
        Err(molecule_store::StoreError::Cipher(
            molecule_store::CipherError::UnknownVersion(7)
        ))
    ));
}

async fn create_with_secrets_is_one_transaction(s: TestStore) {
    let store = keyed(&s);
    let secrets = vec![("K".to_owned(), molecule_store::Secret::new("v"))];
    let ws = store
        .workspaces()
        .create_with_secrets(NewWorkspace::named("w"), &secrets)
        .await
        .unwrap();
    assert_eq!(
        store
            .secrets()
            .get_workspace(ws.id, "K")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "v"
    );
    // A failing create (missing parent) leaves no secret rows behind.
    let mut orphan = NewWorkspace::named("orphan");
    orphan.parent_id = Some(WorkspaceId::new());
    assert!(
        store
            .workspaces()
            .create_with_secrets(orphan, &secrets)
            .await
            .is_err()
    );
    assert_eq!(store.workspaces().list().await.unwrap().len(), 1);
}
