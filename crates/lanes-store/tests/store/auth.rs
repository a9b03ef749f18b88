//! Admin and agent tokens: verified by hash, never stored in plain text.

use crate::common::{Fixture, TestResult, t};
use lanes_store::token::{TOKEN_PREFIX, generate_token, hash_token};
use lanes_store::{AgentState, NewAgent, Store, StoreError};

/// Every byte of the database: the main file, the WAL and the shared-memory index.
fn database_bytes(fx: &Fixture) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", fx.db().display());
        if std::path::Path::new(&path).exists() {
            all.extend(std::fs::read(path)?);
        }
    }
    Ok(all)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_admin_token_is_created_once_and_verified_by_its_hash() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.open().await?;
    let token = store
        .ensure_admin_token(t(0))
        .await?
        .ok_or("the first start creates a token")?;
    assert!(token.starts_with(TOKEN_PREFIX));
    assert_eq!(store.ensure_admin_token(t(1)).await?, None, "only once");
    assert!(store.verify_admin_token(&token).await?);
    assert!(!store.verify_admin_token("lanes_wrong").await?);
    assert!(!store.verify_admin_token(&token[..token.len() - 1]).await?);

    let bytes = database_bytes(&fx)?;
    assert!(contains(&bytes, &hash_token(&token)), "the hash is stored");
    assert!(
        !contains(&bytes, token.as_bytes()),
        "the token itself is not"
    );
    assert!(!contains(&bytes, &token.as_bytes()[TOKEN_PREFIX.len()..]));

    store.close().await?;
    let store = fx.open().await?;
    assert_eq!(
        store.ensure_admin_token(t(2)).await?,
        None,
        "not again after a restart"
    );
    assert!(store.verify_admin_token(&token).await?);
    Ok(())
}

#[tokio::test]
async fn agents_register_with_a_hashed_token_and_change_state() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.open().await?;
    let token = generate_token()?;
    assert_ne!(token, generate_token()?);
    let mac = NewAgent {
        name: "mac-1".into(),
        labels: vec!["mac".into(), "arm64".into()],
        capacity: 2,
    };
    let record = store.register_agent(&mac, &token, t(10)).await?;
    assert_eq!((record.state, record.capacity), (AgentState::Online, 2));
    let err = store
        .register_agent(&mac, &generate_token()?, t(11))
        .await
        .expect_err("name taken");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");

    let found = store
        .verify_agent_token(&token)
        .await?
        .ok_or("token verifies")?;
    assert_eq!(found.labels, mac.labels);
    assert_eq!(store.verify_agent_token("lanes_other").await?, None);
    assert!(!contains(&database_bytes(&fx)?, token.as_bytes()));

    store.agent_heartbeat("mac-1", t(20)).await?;
    store.set_agent_state("mac-1", AgentState::Draining).await?;
    let agents = store.list_agents().await?;
    assert_eq!(agents.len(), 1);
    assert_eq!(
        (agents[0].state, agents[0].last_heartbeat),
        (AgentState::Draining, Some(t(20)))
    );
    assert!(matches!(
        store.set_agent_state("nope", AgentState::Paused).await,
        Err(StoreError::NotFound(_))
    ));
    Ok(())
}
