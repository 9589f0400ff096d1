//! Inbound webhooks: each platform's signature or secret is checked against the channel's own
//! credential before anything is read; a missing, wrong or replayed one is 401 and the agent
//! gets nothing. Verified messages reach the agent and its answer goes out through the adapter.
//! GitHub deliveries: HMAC-SHA256 of the raw body, 503 without a secret.

use hmac::{Hmac, Mac};
use molecule_server::channels::adapter::hex;
use molecule_server::channels::slack;
use molecule_store::testing::TestStore;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

use super::fake::{BOT_TOKEN, FakeChats};
use super::{agent_workspace, create_channel, server};
use crate::common::TestServer;

molecule_store::on_both_backends!(
    slack_signatures_and_round_trip,
    telegram_discord_and_lark_verification,
    github_deliveries_are_signed,
);

const SLACK_SECRET: &str = "slack-signing-secret";

/// Posts `body` to `path` with `headers`; answers status and JSON.
async fn post(s: &TestServer, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut req = s
        .http
        .post(format!("{}{path}", s.base))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn slack_headers(ts: i64, body: &str, secret: &str) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    vec![
        (
            "x-slack-signature",
            slack::sign(secret, &ts, body.as_bytes()),
        ),
        ("x-slack-request-timestamp", ts),
        ("content-type", "application/json".into()),
    ]
}

/// Posts `body` to `/webhooks/slack`, signed now with the channel's secret.
async fn post_signed_slack(s: &TestServer, body: &str) -> (u16, Value) {
    post(
        s,
        "/webhooks/slack",
        &slack_headers(now(), body, SLACK_SECRET),
        body,
    )
    .await
}

async fn slack_signatures_and_round_trip(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    let (ws, _, agent) = agent_workspace(&s).await;
    create_channel(
        &s,
        ws,
        json!({"channel_type": "slack", "config": {
            "bot_token": "xoxb-test-token", "channel_id": "C1", "signing_secret": SLACK_SECRET,
        }}),
    )
    .await;
    let event = json!({"type": "event_callback", "event": {
        "type": "message", "text": "hi slack", "channel": "C1", "user": "U1", "ts": "1.2",
    }})
    .to_string();
    // Forged: no signature, a wrong secret, a replay of an old signed request, a signature
    // of another body.
    let mut no_sig = slack_headers(now(), &event, SLACK_SECRET);
    no_sig.retain(|(k, _)| *k != "x-slack-signature");
    let mut other_body = slack_headers(now(), "{}", SLACK_SECRET);
    other_body.retain(|(k, _)| *k != "content-type");
    for (what, headers) in [
        ("no signature", no_sig),
        (
            "wrong secret",
            slack_headers(now(), &event, "not-the-secret"),
        ),
        ("replayed", slack_headers(now() - 600, &event, SLACK_SECRET)),
        (
            "post-dated",
            slack_headers(now() + 600, &event, SLACK_SECRET),
        ),
        ("another body", other_body),
    ] {
        let (status, reply) = post(&s, "/webhooks/slack", &headers, &event).await;
        assert_eq!(status, 401, "{what}: {reply}");
        assert_eq!(reply, json!({"error": "invalid signature"}));
    }
    // The handshake answers exactly one body.
    let challenge = json!({"type": "url_verification", "challenge": "ch-1"}).to_string();
    let (status, reply) = post_signed_slack(&s, &challenge).await;
    assert_eq!((status, reply), (200, json!({"challenge": "ch-1"})));
    // Bot messages are not answered (no echo loops).
    let bot = json!({"type": "event_callback", "event": {"type": "message", "text": "x", "channel": "C1", "bot_id": "B1"}}).to_string();
    let (status, reply) = post_signed_slack(&s, &bot).await;
    assert_eq!((status, reply), (200, json!({"status": "ignored"})));
    assert!(
        agent.received().is_empty(),
        "nothing forged or ignored was delivered"
    );
    // A signed message reaches the agent; the answer is posted to the channel.
    let (status, reply) = post_signed_slack(&s, &event).await;
    assert_eq!((status, reply), (200, json!({"status": "accepted"})));
    let posted = fake
        .wait_call("slack", "chat.postMessage", |c| {
            c.body["text"] == "echo: hi slack"
        })
        .await;
    assert_eq!(posted.body["channel"], "C1");
    assert_eq!(posted.auth, "Bearer xoxb-test-token");
    assert_eq!(agent.received().len(), 1);
    assert_eq!(agent.received()[0]["params"]["metadata"]["source"], "slack");
    // A signed message from a channel no row is bound to finds no channel.
    let stray = event.replace("\"C1\"", "\"C9\"");
    let (status, reply) = post_signed_slack(&s, &stray).await;
    assert_eq!((status, reply), (200, json!({"status": "no_channel"})));
    let (status, reply) = post(&s, "/webhooks/irc", &[], "{}").await;
    assert_eq!(
        (status, reply),
        (404, json!({"error": "unknown channel type"}))
    );
}

fn discord_headers(key: &Ed25519KeyPair, ts: i64, body: &str) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    let sig = key.sign(format!("{ts}{body}").as_bytes());
    vec![
        ("x-signature-ed25519", hex(sig.as_ref())),
        ("x-signature-timestamp", ts),
    ]
}

async fn telegram_discord_and_lark_verification(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    let (ws, _, agent) = agent_workspace(&s).await;
    let discord_key = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
    let stranger_key = Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).unwrap();
    let base = &fake.base;
    create_channel(
        &s,
        ws,
        json!({"channel_type": "telegram", "config": {
            "bot_token": BOT_TOKEN, "chat_id": "42", "webhook_secret": "tg-secret-123",
        }}),
    )
    .await;
    create_channel(
        &s,
        ws,
        json!({"channel_type": "discord", "config": {
            "webhook_url": format!("{base}/discord/api/webhooks/1/tok"),
            "public_key": hex(discord_key.public_key().as_ref()),
        }}),
    )
    .await;
    create_channel(
        &s,
        ws,
        json!({"channel_type": "lark", "config": {
            "webhook_url": format!("{base}/lark/open-apis/bot/v2/hook/abc"),
            "verify_token": "lark-verify-token",
        }}),
    )
    .await;

    // Telegram: the secret token header must match the channel's webhook_secret.
    let update = json!({"update_id": 1, "message": {
        "message_id": 5, "text": "via webhook", "chat": {"id": 42, "type": "private"},
        "from": {"id": 7, "username": "alice"},
    }})
    .to_string();
    for (what, headers) in [
        ("no secret", vec![]),
        (
            "wrong secret",
            vec![("x-telegram-bot-api-secret-token", "guess".to_owned())],
        ),
    ] {
        let (status, reply) = post(&s, "/webhooks/telegram", &headers, &update).await;
        assert_eq!(status, 401, "telegram {what}: {reply}");
    }
    // Discord: Ed25519 with the channel's own key, over a fresh timestamp.
    let command = json!({"type": 2, "id": "i1", "channel_id": "D1", "token": "itok",
        "data": {"name": "ask", "options": [{"name": "q", "value": "hello"}]},
        "member": {"user": {"id": "U7", "username": "bob"}}})
    .to_string();
    let mut bad_hex = discord_headers(&discord_key, now(), &command);
    bad_hex[0].1 = "zz".into();
    for (what, headers) in [
        ("unsigned", vec![]),
        (
            "another key",
            discord_headers(&stranger_key, now(), &command),
        ),
        (
            "replayed",
            discord_headers(&discord_key, now() - 600, &command),
        ),
        ("not hex", bad_hex),
        ("another body", discord_headers(&discord_key, now(), "{}")),
    ] {
        let (status, reply) = post(&s, "/webhooks/discord", &headers, &command).await;
        assert_eq!(status, 401, "discord {what}: {reply}");
    }
    // Lark: the event's token must be the channel's verify_token.
    let lark_event = |token: &str| {
        json!({"schema": "2.0", "header": {"event_type": "im.message.receive_v1", "token": token},
            "event": {"sender": {"sender_id": {"open_id": "ou_1"}},
                "message": {"chat_id": "oc_1", "message_id": "om_1", "message_type": "text",
                    "chat_type": "group", "content": "{\"text\":\"hi lark\"}"}}})
        .to_string()
    };
    for (what, body) in [
        ("wrong token", lark_event("guess")),
        (
            "no token",
            json!({"type": "url_verification", "challenge": "c"}).to_string(),
        ),
    ] {
        let (status, reply) = post(&s, "/webhooks/lark", &[], &body).await;
        assert_eq!(status, 401, "lark {what}: {reply}");
    }
    assert!(agent.received().is_empty(), "nothing forged was delivered");

    // Handshakes: one body each.
    let ping = json!({"type": 1}).to_string();
    let (status, reply) = post(
        &s,
        "/webhooks/discord",
        &discord_headers(&discord_key, now(), &ping),
        &ping,
    )
    .await;
    assert_eq!((status, reply["type"].clone()), (200, json!(1)));
    let hello =
        json!({"type": "url_verification", "challenge": "lc", "token": "lark-verify-token"})
            .to_string();
    let (status, reply) = post(&s, "/webhooks/lark", &[], &hello).await;
    assert_eq!((status, reply), (200, json!({"challenge": "lc"})));

    // Verified messages reach the agent; the answers go out through each adapter.
    let secret = vec![(
        "x-telegram-bot-api-secret-token",
        "tg-secret-123".to_owned(),
    )];
    let (status, reply) = post(&s, "/webhooks/telegram", &secret, &update).await;
    assert_eq!((status, reply), (200, json!({"status": "accepted"})));
    fake.wait_call("telegram", "sendMessage", |c| {
        c.body["text"] == "echo: via webhook"
    })
    .await;
    let (status, reply) = post(
        &s,
        "/webhooks/discord",
        &discord_headers(&discord_key, now(), &command),
        &command,
    )
    .await;
    assert_eq!(
        (status, reply["status"].clone(), reply["type"].clone()),
        (200, json!("accepted"), json!(4))
    );
    let posted = fake
        .wait_call("discord", "1/tok", |c| {
            c.body["content"] == "echo: /ask hello"
        })
        .await;
    assert_eq!(posted.body, json!({"content": "echo: /ask hello"}));
    let (status, reply) = post(&s, "/webhooks/lark", &[], &lark_event("lark-verify-token")).await;
    assert_eq!((status, reply), (200, json!({"status": "accepted"})));
    let posted = fake
        .wait_call("lark", "abc", |c| {
            c.body["content"]["text"] == "echo: hi lark"
        })
        .await;
    assert_eq!(posted.body["msg_type"], "text");
    assert_eq!(agent.received().len(), 3);
}

fn github_headers(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    vec![
        (
            "x-hub-signature-256",
            format!("sha256={}", hex(&mac.finalize().into_bytes())),
        ),
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
    ]
}

async fn github_deliveries_are_signed(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    let (ws, _, agent) = agent_workspace(&s).await;
    let comment = json!({"action": "created", "repository": {"full_name": "o/r"},
        "sender": {"login": "octo"}, "issue": {"number": 12},
        "comment": {"body": " please look ", "user": {"login": "octo"}, "html_url": "https://x"}})
    .to_string();
    let path = format!("/webhooks/github/{ws}");
    let mut unsigned = github_headers("gh-secret", "issue_comment", "d-0", &comment);
    unsigned.remove(0);
    for (what, headers) in [
        ("unsigned", unsigned),
        (
            "wrong secret",
            github_headers("guess", "issue_comment", "d-0", &comment),
        ),
        (
            "another body",
            github_headers("gh-secret", "issue_comment", "d-0", "{}"),
        ),
    ] {
        let (status, reply) = post(&s, &path, &headers, &comment).await;
        assert_eq!(
            (status, reply),
            (401, json!({"error": "invalid webhook signature"})),
            "{what}"
        );
    }
    assert!(agent.received().is_empty());
    let (status, reply) = post(
        &s,
        &path,
        &github_headers("gh-secret", "issue_comment", "d-1", &comment),
        &comment,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["result"]["parts"][0]["text"],
        "echo: GitHub issue_comment event (created) in o/r issue #12 by octo:\nplease look"
    );
    let received = agent.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["params"]["metadata"]["delivery_id"], "d-1");
    // A redelivery is not handled twice.
    let (status, reply) = post(
        &s,
        &path,
        &github_headers("gh-secret", "issue_comment", "d-1", &comment),
        &comment,
    )
    .await;
    assert_eq!((status, reply["status"].clone()), (200, json!("duplicate")));
    assert_eq!(agent.received().len(), 1);
    let push = json!({"ref": "x"}).to_string();
    let (status, reply) = post(
        &s,
        &path,
        &github_headers("gh-secret", "push", "d-2", &push),
        &push,
    )
    .await;
    assert_eq!((status, reply["status"].clone()), (202, json!("ignored")));
    // Without a secret configured: 503 before anything else.
    let bare = TestServer::start_configured(
        TestStore::sqlite().await,
        crate::common::Options::STRICT,
        |st| st,
    )
    .await;
    let (status, reply) = post(&bare, "/webhooks/github", &[], "{}").await;
    assert_eq!(
        (status, reply),
        (
            503,
            json!({"error": "github webhook secret is not configured"})
        )
    );
}
