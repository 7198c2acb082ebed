#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Both transports: direct messages and gossip arrive with the sender's authenticated key; a
//! closed network refuses an unlisted peer; oversized messages are refused.

use std::time::Duration;

use phalanx_net::memory::MemoryHub;
use phalanx_net::p2p::{Config, Libp2pNetwork, Peer};
use phalanx_net::{MAX_MESSAGE_BYTES, NetError, NetEvent, Network, PeerKey};

/// The public key of an ed25519 seed (the derivation the lock file's identity keys use).
fn public(secret: [u8; 32]) -> PeerKey {
    let mut s = secret;
    let kp = libp2p::identity::Keypair::ed25519_from_bytes(&mut s).unwrap();
    PeerKey(kp.public().try_into_ed25519().unwrap().to_bytes())
}

async fn next(net: &mut impl Network) -> NetEvent {
    tokio::time::timeout(Duration::from_secs(20), net.recv())
        .await
        .expect("an event within 20 s")
        .expect("network open")
}

async fn start(secret: [u8; 32], peers: Vec<Peer>, closed: bool) -> Libp2pNetwork {
    Libp2pNetwork::start(Config {
        secret,
        listen: "/ip4/127.0.0.1/tcp/0".into(),
        peers,
        closed,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_direct_and_gossip_between_listed_peers() {
    let (sa, sb) = ([1u8; 32], [2u8; 32]);
    // a knows only b's key; b knows a's key and address and dials it.
    let mut a = start(
        sa,
        vec![Peer {
            key: public(sb),
            address: None,
        }],
        true,
    )
    .await;
    let mut b = start(
        sb,
        vec![Peer {
            key: public(sa),
            address: Some(a.listening()[0].clone()),
        }],
        true,
    )
    .await;
    assert_eq!(a.local(), public(sa));
    b.send(public(sa), b"hello".to_vec()).unwrap();
    match next(&mut a).await {
        NetEvent::Direct { from, data } => {
            assert_eq!(from, public(sb));
            assert_eq!(data, b"hello");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The reply goes back over the connection b opened.
    a.send(public(sb), b"hi".to_vec()).unwrap();
    assert_eq!(
        next(&mut b).await,
        NetEvent::Direct {
            from: public(sa),
            data: b"hi".to_vec()
        }
    );

    a.subscribe("t").unwrap();
    b.subscribe("t").unwrap();
    // Gossipsub needs the subscriptions exchanged before a publish finds a peer: retry.
    let mut got = None;
    for _ in 0..40 {
        b.publish("t", b"gossip".to_vec()).unwrap();
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(250), a.recv()).await {
            got = Some(ev);
            break;
        }
    }
    assert_eq!(
        got.expect("gossip delivered"),
        NetEvent::Gossip {
            from: public(sb),
            topic: "t".into(),
            data: b"gossip".to_vec()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_network_drops_unlisted_peers() {
    let (sa, sx) = ([3u8; 32], [9u8; 32]);
    let mut a = start(sa, vec![], true).await;
    let x = start(
        sx,
        vec![Peer {
            key: public(sa),
            address: Some(a.listening()[0].clone()),
        }],
        false,
    )
    .await;
    for _ in 0..10 {
        x.send(public(sa), b"let me in".to_vec()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(2), a.recv()).await;
    assert!(got.is_err(), "an unlisted peer's message arrived: {got:?}");
    assert!(!a.connected().await.unwrap().contains(&public(sx)));
}

#[tokio::test]
async fn memory_hub_direct_gossip_and_limits() {
    let hub = MemoryHub::new();
    let (ka, kb, kc) = (PeerKey([1; 32]), PeerKey([2; 32]), PeerKey([3; 32]));
    let mut a = hub.join(ka);
    let mut b = hub.join(kb);
    let c = hub.join(kc);
    c.send(ka, vec![7]).unwrap();
    assert_eq!(
        next(&mut a).await,
        NetEvent::Direct {
            from: kc,
            data: vec![7]
        }
    );
    a.subscribe("blocks").unwrap();
    b.subscribe("blocks").unwrap();
    a.publish("blocks", vec![1, 2]).unwrap();
    assert_eq!(
        next(&mut b).await,
        NetEvent::Gossip {
            from: ka,
            topic: "blocks".into(),
            data: vec![1, 2]
        }
    );
    // The publisher does not hear itself; c did not subscribe.
    c.publish("blocks", vec![3]).unwrap();
    assert_eq!(
        next(&mut a).await,
        NetEvent::Gossip {
            from: kc,
            topic: "blocks".into(),
            data: vec![3]
        }
    );
    assert!(matches!(
        a.send(kb, vec![0; MAX_MESSAGE_BYTES + 1]),
        Err(NetError::TooLarge { .. })
    ));
    // A peer that left misses messages; sending to it is not an error.
    drop(b);
    a.send(kb, vec![1]).unwrap();
}

#[test]
fn scores_ban_a_repeat_offender_and_forgive_a_rare_one() {
    use phalanx_net::Offence;
    use phalanx_net::scoring::{BAN_DURATION, PeerScores};
    use std::time::Instant;
    let (bad, rare) = (PeerKey([1; 32]), PeerKey([2; 32]));
    let t0 = Instant::now();
    let mut scores = PeerScores::new();
    // Four undecodable messages in a row: banned at the fourth.
    for i in 0..3 {
        assert!(
            !scores.report(bad, Offence::Undecodable, t0),
            "banned at {i}"
        );
    }
    assert!(scores.report(bad, Offence::Undecodable, t0));
    assert!(scores.is_banned(&bad, t0 + Duration::from_secs(1)));
    // A rare offender recovers in between and is never banned.
    for i in 0..20u64 {
        assert!(!scores.report(rare, Offence::Invalid, t0 + Duration::from_secs(30 * i)));
    }
    assert!(!scores.is_banned(&rare, t0 + Duration::from_secs(600)));
    // Cheap offences cost little.
    let cheap = PeerKey([3; 32]);
    for _ in 0..19 {
        assert!(!scores.report(cheap, Offence::Useless, t0));
    }
    assert!(scores.report(cheap, Offence::Useless, t0));
    // Bans end.
    let later = t0 + BAN_DURATION + Duration::from_secs(1);
    assert!(!scores.is_banned(&bad, later));
    let mut lifted = scores.lift_expired(later);
    lifted.sort();
    assert_eq!(lifted, vec![bad, cheap]);
    assert_eq!(scores.score(&bad, later), 0.0);
}

#[tokio::test]
async fn memory_network_drops_a_banned_peer() {
    use phalanx_net::Offence;
    let hub = MemoryHub::new();
    let (ka, kb, kc) = (PeerKey([1; 32]), PeerKey([2; 32]), PeerKey([3; 32]));
    let a = hub.join(ka);
    let mut b = hub.join(kb);
    let c = hub.join(kc);
    for _ in 0..4 {
        b.report(ka, Offence::Undecodable);
    }
    a.send(kb, b"from a banned peer".to_vec()).unwrap();
    c.send(kb, b"from c".to_vec()).unwrap();
    assert_eq!(
        next(&mut b).await,
        NetEvent::Direct {
            from: kc,
            data: b"from c".to_vec()
        }
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_disconnects_and_ignores_a_banned_peer() {
    use phalanx_net::Offence;
    let (sa, sb) = ([5u8; 32], [6u8; 32]);
    let mut a = start(sa, vec![], false).await;
    let b = start(
        sb,
        vec![Peer {
            key: public(sa),
            address: Some(a.listening()[0].clone()),
        }],
        false,
    )
    .await;
    b.send(public(sa), b"before".to_vec()).unwrap();
    assert!(matches!(next(&mut a).await, NetEvent::Direct { .. }));
    for _ in 0..4 {
        a.report(public(sb), Offence::Invalid);
    }
    // a drops b's connection and every message b sends after the ban; b keeps redialling
    // and a keeps closing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let _ = b.send(public(sa), b"after".to_vec());
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(250), a.recv()).await {
            panic!("a banned peer's message arrived: {ev:?}");
        }
    }
    // b's redials reach a now and then and are closed at once: a never keeps the connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while a.connected().await.unwrap().contains(&public(sb)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a keeps the banned peer's connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gossip is relayed only once the relaying peer's validator accepts it: a → b → c in a line,
/// b judging the topic; c gets what b accepts and never what b rejects or ignores, while b's
/// role still sees every message (to score its author).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_relayed_only_after_validation() {
    use phalanx_net::p2p::Verdict;
    use std::sync::Arc;

    let (sa, sb, sc) = ([11u8; 32], [12u8; 32], [13u8; 32]);
    let mut b = start(sb, vec![], false).await;
    let b_addr = b.listening()[0].clone();
    let dial_b = || {
        vec![Peer {
            key: public(sb),
            address: Some(b_addr.clone()),
        }]
    };
    let a = start(sa, dial_b(), false).await;
    let mut c = start(sc, dial_b(), false).await;
    b.set_validator(
        "t",
        Arc::new(|data: &[u8]| match data.first() {
            Some(b'g') => Verdict::Accept,
            Some(b'i') => Verdict::Ignore,
            _ => Verdict::Reject,
        }),
    )
    .unwrap();
    for n in [&a, &b, &c] {
        n.subscribe("t").unwrap();
    }
    // Publish bad, ignored and good messages until c has a good one (subscriptions and the
    // mesh take a moment), then a while longer.
    let mut at_c = Vec::new();
    let mut round = 0u32;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !at_c.iter().any(|d: &Vec<u8>| d.starts_with(b"good")) {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing relayed to c: {at_c:?}"
        );
        round += 1;
        for kind in ["bad", "ignored", "good"] {
            let _ = a.publish("t", format!("{kind}-{round}").into_bytes());
        }
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await {
            if let NetEvent::Gossip { data, .. } = ev {
                at_c.push(data);
            }
        }
    }
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
        if let NetEvent::Gossip { data, .. } = ev {
            at_c.push(data);
        }
    }
    assert!(
        at_c.iter().all(|d| d.starts_with(b"good")),
        "c got what b did not accept: {:?}",
        at_c.iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect::<Vec<_>>()
    );
    let mut at_b = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(100), b.recv()).await {
        if let NetEvent::Gossip { from, data, .. } = ev {
            assert_eq!(from, public(sa));
            at_b.push(data);
        }
    }
    assert!(
        at_b.iter().any(|d| d.starts_with(b"bad")) && at_b.iter().any(|d| d.starts_with(b"good")),
        "b's role sees every message"
    );
}
