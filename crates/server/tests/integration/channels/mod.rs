//! Chat channels over real HTTP, both databases: a real server, a real agent on loopback, and
//! local stand-ins for Telegram, Slack, Discord and Lark ([`fake`]) answering the real API
//! shapes. CRUD with validation, masking and ciphertext at rest; Telegram long polling through
//! the channel manager to the agent and back; every webhook's signature check refusing forged
//! and replayed requests ([`webhooks`]); one poller per channel across replicas
//! ([`replicas`]).

mod cron;
mod fake;
mod replicas;
mod webhooks;

use std::time::Duration;

use molecule_domain::WorkspaceId;
use molecule_server::AppState;
use molecule_server::channels::{ChannelManager, Ctx, Endpoints, Settings};
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::agent::TestAgent;
use crate::common::{ADMIN, Options, TestServer, assert_status, eventually};
use fake::{BOT_TOKEN, FakeChats};

molecule_store::on_both_backends!(
    crud_validation_masking_and_ciphertext,
    telegram_long_polling_reaches_the_agent_and_answers,
);

/// A strict server whose A2A policy lets loopback agents in, talking to `fake`.
pub(crate) async fn server(db: TestStore, fake: &FakeChats) -> TestServer {
    let fake_base = fake.base.clone();
    TestServer::start_configured(db, Options::STRICT, move |state| {
        let state = state
            .with_a2a_settings(molecule_a2a::Settings {
                policy: molecule_a2a::ssrf::UrlPolicy {
                    dev_mode: true,
                    saas: false,
                },
                ..Default::default()
            })
            .with_github_webhook_secret(Some("gh-secret".into()));
        let m = manager_at(&state, &fake_base);
        state.with_channels(m)
    })
    .await
}

/// A channel manager talking to the fake platforms at `base`, with short polls.
pub(crate) fn manager_at(state: &AppState, base: &str) -> ChannelManager {
    let mut ctx = Ctx::new(Endpoints::all_at(base));
    ctx.poll_timeout = Duration::from_secs(1);
    ctx.poll_retry = Duration::from_millis(50);
    ChannelManager::new(
        state.store.clone(),
        state.a2a.clone(),
        state.events.clone(),
        ctx,
        Settings {
            reconcile_every: Duration::from_millis(200),
            restart_backoff: Duration::from_millis(100),
            ..Settings::default()
        },
    )
}

/// An external workspace whose agent (a real HTTP agent on loopback) registered.
pub(crate) async fn agent_workspace(s: &TestServer) -> (WorkspaceId, String, TestAgent) {
    let agent = TestAgent::start().await;
    let (id, token) = s.registered("chatty", &agent.url, None).await;
    (id, token, agent)
}

/// Creates a channel as the admin; answers its id.
pub(crate) async fn create_channel(s: &TestServer, ws: WorkspaceId, body: Value) -> String {
    let path = format!("/workspaces/{ws}/channels");
    let created = assert_status(s.call("POST", &path, Some(ADMIN), Some(body)).await, 201);
    created["id"].as_str().unwrap().to_owned()
}

fn telegram_config(chat: &str) -> Value {
    json!({"bot_token": BOT_TOKEN, "chat_id": chat, "webhook_secret": "tg-webhook-secret-1"})
}

async fn crud_validation_masking_and_ciphertext(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    let (adapters_status, adapters) = s.call("GET", "/channels/adapters", None, None).await;
    assert_eq!(adapters_status, 200);
    let names: Vec<&str> = adapters
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Discord", "Lark / Feishu", "Slack", "Telegram"]);
    let (ws, token) = s.provisioned("crud", None).await;
    let (other, _) = s.provisioned("other", None).await;
    let path = format!("/workspaces/{ws}/channels");
    let post = |body: Value| s.call("POST", &path, Some(&token), Some(body));

    // Malformed configs: a clear 400 and nothing saved.
    for (body, message) in [
        (json!({"config": {}}), "channel_type is required"),
        (
            json!({"channel_type": "irc", "config": {}}),
            "unsupported channel_type: irc",
        ),
        (
            json!({"channel_type": "telegram", "config": {"bot_token": "nope", "chat_id": "1"}}),
            "invalid channel config: invalid bot token format",
        ),
        (
            json!({"channel_type": "telegram", "config": {"bot_token": BOT_TOKEN, "chat_id": "abc"}}),
            "invalid channel config: invalid chat_id \"abc\": not an integer",
        ),
        (
            json!({"channel_type": "slack", "config": {"bot_token": "xoxb-1"}}),
            "invalid channel config: channel_id is required with bot_token",
        ),
        (
            json!({"channel_type": "discord", "config": {"webhook_url": "https://evil.test/api/webhooks/1"}}),
            &format!(
                "invalid channel config: webhook_url must start with {}/discord/api/webhooks/",
                fake.base
            ),
        ),
        (
            json!({"channel_type": "lark", "config": {"webhook_url": 7}}),
            "invalid channel config: webhook_url must be a string",
        ),
    ] {
        let (status, reply) = post(body).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["error"], message);
    }
    let (status, reply) = s.call("POST", &path, Some(&token), None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid JSON"))
    );
    let (_, listed) = s.call("GET", &path, Some(&token), None).await;
    assert_eq!(listed, json!([]));

    // Create: sealed at rest, masked when listed.
    let body = json!({"channel_type": "telegram", "config": telegram_config("42"), "allowed_users": [7, "8"]});
    let created = assert_status(post(body.clone()).await, 201);
    assert_eq!(created["channel_type"], "telegram");
    assert_eq!(created["enabled"], true);
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let (status, dup) = post(body).await;
    assert_eq!(status, 409, "{dup}");
    let stored = s
        .state
        .store
        .channels()
        .stored_config(id)
        .await
        .unwrap()
        .unwrap();
    let raw = stored.to_string();
    assert!(
        stored["bot_token"].as_str().unwrap().starts_with("ec1:"),
        "{raw}"
    );
    assert!(
        stored["webhook_secret"]
            .as_str()
            .unwrap()
            .starts_with("ec1:"),
        "{raw}"
    );
    assert!(
        !raw.contains(BOT_TOKEN) && !raw.contains("tg-webhook-secret-1"),
        "{raw}"
    );
    assert_eq!(stored["chat_id"], "42", "route keys stay readable");
    let (status, listed) = s.call("GET", &path, Some(&token), None).await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        !text.contains(BOT_TOKEN) && !text.contains("tg-webhook-secret-1"),
        "{text}"
    );
    let row = &listed[0];
    assert_eq!(row["config"]["bot_token"], "1234...ghij");
    assert_eq!(row["config"]["webhook_secret"], "tg-w...et-1");
    assert_eq!(row["allowed_users"], json!(["7", "8"]));
    assert_eq!(row["message_count"], 0);

    // PATCH merges, keeps a masked value sent back, validates the result.
    let one = format!("{path}/{id}");
    let patch = json!({"config": {"bot_token": "1234...ghij", "chat_id": "42, 43"}});
    assert_status(s.call("PATCH", &one, Some(&token), Some(patch)).await, 200);
    let ch = s.state.store.channels().get(ws, id).await.unwrap().unwrap();
    assert_eq!(ch.config["bot_token"], BOT_TOKEN);
    assert_eq!(ch.config["chat_id"], "42, 43");
    assert_eq!(ch.config["webhook_secret"], "tg-webhook-secret-1");
    let bad = json!({"config": {"bot_token": "broken"}});
    let (status, reply) = s.call("PATCH", &one, Some(&token), Some(bad)).await;
    assert_eq!(status, 400, "{reply}");
    let ch = s.state.store.channels().get(ws, id).await.unwrap().unwrap();
    assert_eq!(ch.config["bot_token"], BOT_TOKEN, "nothing saved");

    // Another workspace's path never reaches this channel (spec §D5).
    let foreign = format!("/workspaces/{other}/channels/{id}");
    for (method, suffix) in [
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/send"),
        ("POST", "/test"),
    ] {
        let (status, reply) = s
            .call(
                method,
                &format!("{foreign}{suffix}"),
                Some(ADMIN),
                Some(json!({"text": "x", "enabled": false})),
            )
            .await;
        assert_eq!(status, 404, "{method} {suffix}: {reply}");
    }

    // Send and test go out to every chat id; a budget stops sends.
    let (status, reply) = s
        .call(
            "POST",
            &format!("{one}/send"),
            Some(&token),
            Some(json!({"text": ""})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("text is required"))
    );
    let sent = s.call(
        "POST",
        &format!("{one}/send"),
        Some(&token),
        Some(json!({"text": "hi all"})),
    );
    assert_eq!(assert_status(sent.await, 200), json!({"status": "sent"}));
    let chats: Vec<Value> = fake
        .calls_of("telegram", "sendMessage")
        .iter()
        .map(|c| c.body["chat_id"].clone())
        .collect();
    assert_eq!(chats, [json!(42), json!(43)]);
    let tested = s
        .call("POST", &format!("{one}/test"), Some(&token), None)
        .await;
    assert_eq!(assert_status(tested, 200)["message"], "test message sent");
    let budget = json!({"channel_budget": 2});
    assert_status(s.call("PATCH", &one, Some(&token), Some(budget)).await, 200);
    let (status, reply) = s
        .call(
            "POST",
            &format!("{one}/send"),
            Some(&token),
            Some(json!({"text": "more"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (429, Some("channel budget exceeded"))
    );

    // Sends that fail everywhere are failures (spec §D11), with no vendor text.
    let revoked = json!({"config": {"bot_token": fake::REVOKED_TOKEN}, "channel_budget": null});
    assert_status(
        s.call("PATCH", &one, Some(&token), Some(revoked)).await,
        200,
    );
    let (status, reply) = s
        .call("POST", &format!("{one}/test"), Some(&token), None)
        .await;
    assert_eq!(reply, json!({"error": "test message failed"}));
    assert_eq!(status, 500);

    assert_status(s.call("DELETE", &one, Some(&token), None).await, 200);
    let (status, _) = s.call("DELETE", &one, Some(&token), None).await;
    assert_eq!(status, 404);

    // Discovery (admin): the chats the bot sees, each /start answered with its chat id.
    let discover = |body: Value| s.call("POST", "/channels/discover", Some(ADMIN), Some(body));
    for (body, message) in [
        (json!({"workspace_id": ws}), "bot_token is required"),
        (json!({"bot_token": BOT_TOKEN}), "workspace_id is required"),
        (
            json!({"bot_token": BOT_TOKEN, "workspace_id": ws, "channel_type": "irc"}),
            "unsupported channel_type",
        ),
        (
            json!({"bot_token": BOT_TOKEN, "workspace_id": ws, "channel_type": "slack"}),
            "discovery not supported for slack",
        ),
        (
            json!({"bot_token": "nope", "workspace_id": ws}),
            "invalid bot token format",
        ),
        (
            json!({"bot_token": fake::REVOKED_TOKEN, "workspace_id": ws}),
            "Invalid bot token. Check the token from @BotFather and try again.",
        ),
    ] {
        let (status, reply) = discover(body).await;
        assert_eq!((status, reply["error"].as_str()), (400, Some(message)));
    }
    fake.push_update(json!({"message": {
        "message_id": 9, "text": "/start", "chat": {"id": 55, "type": "private", "first_name": "Ann", "last_name": "Lee"},
        "from": {"id": 55, "first_name": "Ann"},
    }}));
    let body = json!({"bot_token": BOT_TOKEN, "workspace_id": ws, "channel_type": "telegram"});
    let found = assert_status(discover(body).await, 200);
    assert_eq!(found["bot_username"], "test_bot");
    assert_eq!(
        found["chats"],
        json!([{"chat_id": "55", "name": "Ann Lee", "type": "private"}])
    );
    assert!(
        found["privacy_warning"]
            .as_str()
            .unwrap()
            .contains("@test_bot")
    );
    let welcome = fake
        .wait_call("telegram", "sendMessage", |c| c.body["chat_id"] == 55)
        .await;
    assert!(welcome.body["text"].as_str().unwrap().contains("55"));
}

async fn telegram_long_polling_reaches_the_agent_and_answers(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    s.state.channels.spawn(&s.state.supervisor);
    let (ws, _, agent) = agent_workspace(&s).await;
    let mut events = s.events();
    let id = create_channel(
        &s,
        ws,
        json!({"channel_type": "telegram", "config": telegram_config("42")}),
    )
    .await;
    // The poller takes the bot: webhook off, then long polls.
    fake.wait_call("telegram", "getUpdates", |_| true).await;
    assert!(!fake.calls_of("telegram", "deleteWebhook").is_empty());

    // A command is answered inline and not forwarded.
    fake.push_update(json!({"message": {
        "message_id": 1, "text": "/start", "chat": {"id": 42, "type": "private"},
        "from": {"id": 7, "username": "alice", "first_name": "Alice"},
    }}));
    fake.wait_call("telegram", "sendMessage", |c| {
        c.body["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("✅ Connected"))
    })
    .await;
    // A message from another chat is ignored; one from the bound chat reaches the agent.
    fake.push_update(json!({"message": {
        "message_id": 2, "text": "stranger", "chat": {"id": 99, "type": "private"},
        "from": {"id": 9, "username": "mallory"},
    }}));
    fake.push_update(json!({"message": {
        "message_id": 3, "text": "hello agent", "chat": {"id": 42, "type": "private"},
        "from": {"id": 7, "username": "alice", "first_name": "Alice"},
    }}));
    let reply = fake
        .wait_call("telegram", "sendMessage", |c| {
            c.body["text"] == "echo: hello agent"
        })
        .await;
    assert_eq!(reply.body["chat_id"], 42);
    assert_eq!(reply.body["parse_mode"], "Markdown");
    let received = agent.received();
    assert_eq!(
        received.len(),
        1,
        "only the bound chat's message: {received:?}"
    );
    let sent = &received[0];
    assert_eq!(sent["params"]["message"]["parts"][0]["text"], "hello agent");
    assert_eq!(sent["params"]["metadata"]["source"], "telegram");
    assert_eq!(sent["params"]["metadata"]["username"], "alice");
    assert_eq!(sent["params"]["metadata"]["chat_id"], "42");
    let event = crate::common::next_event(&mut events, "CHANNEL_MESSAGE", ws).await;
    assert_eq!(event["payload"]["direction"], "inbound");
    assert_eq!(event["payload"]["channel_id"], json!(id));
    // The reply is counted and the next message carries the history.
    let channel: uuid::Uuid = id.parse().unwrap();
    eventually("the message counted", || async {
        let c = s
            .state
            .store
            .channels()
            .get(ws, channel)
            .await
            .unwrap()
            .unwrap();
        c.message_count == 1
    })
    .await;
    fake.push_update(json!({"message": {
        "message_id": 4, "text": "again", "chat": {"id": 42, "type": "private"},
        "from": {"id": 7, "username": "alice"},
    }}));
    fake.wait_call("telegram", "sendMessage", |c| {
        c.body["text"] == "echo: again"
    })
    .await;
    let second = agent.received()[1].clone();
    let history = &second["params"]["metadata"]["history"];
    assert_eq!(history[0]["message"], "hello agent", "{second}");
    assert_eq!(history[0]["reply"], "echo: hello agent");

    // The manager's loop reports its ticks.
    let (_, live) = s.call("GET", "/admin/liveness", Some(ADMIN), None).await;
    assert!(live["subsystems"]["channel-manager"].is_object(), "{live}");

    // A poller whose token is revoked stops, and is started again after a backoff (it
    // never stays dead, spec §D13).
    let (ws2, _) = s.provisioned("revoked", None).await;
    let revoked = json!({"bot_token": fake::REVOKED_TOKEN, "chat_id": "1"});
    let id2: uuid::Uuid = create_channel(
        &s,
        ws2,
        json!({"channel_type": "telegram", "config": revoked}),
    )
    .await
    .parse()
    .unwrap();
    // The first poller and two starts of the revoked one each took the bot off webhooks.
    eventually("the revoked poller was started again", || async {
        fake.calls_of("telegram", "deleteWebhook").len() >= 3
    })
    .await;
    let one2 = format!("/workspaces/{ws2}/channels/{id2}");
    assert_status(s.call("DELETE", &one2, Some(ADMIN), None).await, 200);

    // Disabling the channel stops its poller.
    eventually("only the live channel polls", || async {
        s.state.channels.polling() == vec![channel]
    })
    .await;
    let off = json!({"enabled": false});
    let one = format!("/workspaces/{ws}/channels/{id}");
    assert_status(s.call("PATCH", &one, Some(ADMIN), Some(off)).await, 200);
    eventually("the poller stopped", || async {
        s.state.channels.polling().is_empty()
    })
    .await;
}
