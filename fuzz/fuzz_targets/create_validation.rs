//! The `POST /workspaces` body, parsed and validated as the route does before it writes
//! anything: never panics; a refusal is a 4xx; an accepted body has a valid name, role and
//! model, an external URL with an http(s) scheme, and a `workspace_dir` that is absolute, has
//! no `..`, and is neither `/` nor equal to or under a system directory *as the kernel
//! resolves it* (empty and `.` components do not count).

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_domain::validation;
use molecule_server::fuzzing::create_body;

const SYSTEM_DIRS: &[&str] = &[
    "etc", "var", "proc", "sys", "dev", "boot", "sbin", "bin", "lib", "usr",
];

fuzz_target!(|data: &[u8]| {
    let v = match create_body(data) {
        Ok(v) => v,
        Err(status) => {
            assert!((400..500).contains(&status), "refused with {status}");
            return;
        }
    };
    assert!(validation::name(&v.name).is_ok(), "name {:?}", v.name);
    if let Some(role) = &v.role {
        assert!(validation::role(role).is_ok(), "role {role:?}");
    }
    if let Some(model) = &v.model {
        assert!(validation::model(model).is_ok(), "model {model:?}");
    }
    if v.external
        && let Some(url) = &v.url
    {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "url {url:?}"
        );
    }
    if let Some(dir) = &v.workspace_dir {
        assert!(dir.starts_with('/'), "relative workspace_dir {dir:?}");
        let components: Vec<&str> = dir
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        assert!(!components.contains(&".."), "`..` in workspace_dir {dir:?}");
        let first = components.first().copied();
        assert!(first.is_some(), "workspace_dir {dir:?} is the root");
        assert!(
            !first.is_some_and(|c| SYSTEM_DIRS.contains(&c)),
            "workspace_dir {dir:?} is a system directory"
        );
    }
});
