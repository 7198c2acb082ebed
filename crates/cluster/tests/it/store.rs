//! One test suite for both coordination stores: the embedded one and a real 3-member etcd
//! cluster on loopback (started here; `./scripts/test` installs `etcd-server`).

use std::sync::Arc;
use std::time::Duration;

use phalanx_cluster::embedded::EmbeddedStore;
#[cfg(feature = "etcd")]
use phalanx_cluster::etcd::{EtcdConfig, EtcdStore};
#[cfg(feature = "etcd")]
use phalanx_cluster::testing::LocalEtcd;
use phalanx_cluster::{CoordinationStore, Created, StoreError};

type Store = Arc<dyn CoordinationStore>;

async fn create_if_absent_first_writer_wins(store: &Store) {
    let key = "/t/accepted/b1/0";
    assert_eq!(
        store.create_if_absent(key, b"a").await.unwrap(),
        Created::Won
    );
    assert_eq!(
        store.create_if_absent(key, b"b").await.unwrap(),
        Created::Lost(b"a".to_vec())
    );
    // A retry of the winning value recognises its own win.
    assert_eq!(
        store.create_if_absent(key, b"a").await.unwrap(),
        Created::Won
    );
    assert_eq!(store.get(key).await.unwrap(), Some(b"a".to_vec()));
    assert_eq!(store.get("/t/accepted/b1/1").await.unwrap(), None);
}

async fn racing_creates_have_one_winner(store: &Store) {
    let key = "/t/race";
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create_if_absent(key, &[i]).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    let winners = outcomes.iter().filter(|o| **o == Created::Won).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    let held = store.get(key).await.unwrap().unwrap();
    for o in outcomes {
        if let Created::Lost(v) = o {
            assert_eq!(v, held);
        }
    }
}

async fn list_and_delete_by_prefix(store: &Store) {
    for k in ["/t/p/b", "/t/p/a", "/t/p/c", "/t/q/a"] {
        store.put(k, k.as_bytes(), None).await.unwrap();
    }
    let listed = store.list("/t/p/").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/t/p/a", "/t/p/b", "/t/p/c"]);
    assert_eq!(listed[1].1, b"/t/p/b");
    assert_eq!(store.delete_prefix("/t/p/").await.unwrap(), 3);
    assert!(store.list("/t/p/").await.unwrap().is_empty());
    assert_eq!(store.list("/t/q/").await.unwrap().len(), 1);
}

async fn leased_keys_vanish_with_their_lease(store: &Store) {
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store.put("/t/live/s1", b"0-3", Some(lease)).await.unwrap();
    // Kept alive past its ttl, the key stays.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        store.keep_alive(lease).await.unwrap();
    }
    assert_eq!(store.list("/t/live/").await.unwrap().len(), 1);
    // Left alone, it lapses (etcd checks expiry on its own clock: allow a few seconds).
    let mut gone = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if store.list("/t/live/").await.unwrap().is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "leased key outlived its lease");
    let renewed = store.keep_alive(lease).await;
    assert!(
        matches!(renewed, Err(StoreError::LeaseLapsed(l)) if l == lease),
        "{renewed:?}"
    );
    assert!(matches!(
        store.put("/t/live/s1", b"x", Some(lease)).await,
        Err(StoreError::LeaseLapsed(_))
    ));
    // Revoking deletes at once.
    let lease = store.grant_lease(Duration::from_secs(5)).await.unwrap();
    store.put("/t/live/s2", b"4-7", Some(lease)).await.unwrap();
    store.revoke(lease).await.unwrap();
    assert!(store.list("/t/live/").await.unwrap().is_empty());
}

async fn suite(store: Store) {
    create_if_absent_first_writer_wins(&store).await;
    racing_creates_have_one_winner(&store).await;
    list_and_delete_by_prefix(&store).await;
    leased_keys_vanish_with_their_lease(&store).await;
}

#[tokio::test(start_paused = true)]
async fn embedded_store_passes_the_suite() {
    suite(Arc::new(EmbeddedStore::new())).await;
}

#[tokio::test]
async fn embedded_store_reports_an_outage() {
    let store = EmbeddedStore::new();
    store.close();
    assert!(matches!(store.get("/x").await, Err(StoreError::Closed)));
}

#[cfg(feature = "etcd")]
fn local_etcd(dir: &std::path::Path) -> LocalEtcd {
    let etcd = LocalEtcd::start(3, dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        etcd.wait_ready(Duration::from_secs(20)),
        "etcd did not start: {}",
        etcd.log(0)
    );
    etcd
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = local_etcd(dir.path());
    let store = EtcdStore::connect(EtcdConfig::new(etcd.endpoints()))
        .await
        .unwrap();
    suite(Arc::new(store)).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_keeps_working_with_one_member_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = local_etcd(dir.path());
    let store = EtcdStore::connect(EtcdConfig::new(etcd.endpoints()))
        .await
        .unwrap();
    assert_eq!(
        store.create_if_absent("/k/0", b"x").await.unwrap(),
        Created::Won
    );
    // `kill -9` of one member (the leader or not) leaves two of three: a quorum. The client
    // still has the dead endpoint in its rotation.
    etcd.kill(0);
    for i in 1..20 {
        let key = format!("/k/{i}");
        assert_eq!(
            store.create_if_absent(&key, b"y").await.unwrap(),
            Created::Won,
            "create {i} after killing a member"
        );
    }
    assert_eq!(store.list("/k/").await.unwrap().len(), 20);
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_without_a_quorum_is_unavailable_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = local_etcd(dir.path());
    let mut config = EtcdConfig::new(etcd.endpoints());
    config.retry_budget = Duration::from_secs(3);
    let store = EtcdStore::connect(config).await.unwrap();
    store.put("/q", b"1", None).await.unwrap();
    etcd.kill(1);
    etcd.kill(2);
    let started = std::time::Instant::now();
    let result = store.create_if_absent("/q2", b"1").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    // Gives up after its budget instead of hanging.
    assert!(started.elapsed() < Duration::from_secs(30));
}
