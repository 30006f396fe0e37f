//! Publish-subscribe between peers in separate actix systems, over real loopback sockets.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use distributed_scope::auth::Policy;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerHandle, PeerId, RemoteError, Subscription};
use futures_util::{FutureExt, StreamExt};
use support::{HOUR, LIMIT, block_on, issuer, server, url};

/// A peer on its own thread that does not listen.
fn client(name: &str) -> PeerThread {
    PeerThread::start(Peer::builder(PeerId::from_name(name))).expect("client starts")
}

/// The next item of `subscription`, waited for at most [`LIMIT`].
async fn next<T: serde::de::DeserializeOwned>(subscription: &mut Subscription<T>) -> T {
    tokio::time::timeout(LIMIT, subscription.next())
        .await
        .expect("a publication arrives in time")
        .expect("the subscription is open")
}

/// Publishes `0..count` on `topic` from another thread, each call bounded as a whole: the
/// publisher never waits for its subscribers. Returns what each call returned.
fn publish_all(publisher: &PeerHandle, topic: &'static str, count: u64) -> Vec<usize> {
    let publisher = publisher.clone();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let sent: Vec<usize> = (0..count)
            .map(|value| publisher.publish(topic, &value).expect("publishes"))
            .collect();
        let _ = done.send(sent);
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("every publish call returns promptly, whatever the subscribers do")
}

#[test]
fn fast_subscribers_get_everything_in_order_and_a_slow_one_loses_the_oldest() {
    const SLOW_CAPACITY: usize = 16;
    // Fewer than a link's default in-flight bound (256): the publisher drops nothing, so
    // every loss below is the slow subscriber's own.
    const COUNT: u64 = 200;
    let publisher = server("pubsub-publisher");
    let peers = [client("pubsub-a"), client("pubsub-b"), client("pubsub-c")];
    let publisher_id = publisher.handle().id();
    let target = url(publisher.handle());
    block_on(async {
        for peer in &peers {
            peer.handle().connect(&target).await.expect("links");
        }
        let mut fast_a = peers[0].handle().subscribe::<u64>("ticks");
        let mut fast_b = peers[1].handle().subscribe::<u64>("ticks");
        // The slow subscription first: a publication reaches it before the witness beside it.
        let mut slow = peers[2]
            .handle()
            .subscribe_with_capacity::<u64>("ticks", SLOW_CAPACITY);
        let mut witness = peers[2].handle().subscribe::<u64>("ticks");
        assert_eq!(slow.capacity(), SLOW_CAPACITY);
        for subscription in [&fast_a, &fast_b, &slow, &witness] {
            subscription
                .wait_for(publisher_id, LIMIT)
                .await
                .expect("the publisher accepts the subscription");
        }

        let sent = publish_all(publisher.handle(), "ticks", COUNT);
        assert!(
            sent.iter().all(|&peers| peers == 3),
            "each publication goes to the three linked subscribers: {sent:?}"
        );

        for subscription in [&mut fast_a, &mut fast_b, &mut witness] {
            for expected in 0..COUNT {
                assert_eq!(next(subscription).await, expected, "in publish order");
            }
            assert_eq!(subscription.missed(), 0);
        }
        // The witness has read the last publication: the slow subscription has had every
        // one pushed to it, and holds no more than its capacity.
        assert!(slow.len() <= SLOW_CAPACITY, "{} buffered", slow.len());
        let mut kept = Vec::new();
        for _ in 0..SLOW_CAPACITY {
            kept.push(next(&mut slow).await);
        }
        let newest: Vec<u64> = (COUNT - SLOW_CAPACITY as u64..COUNT).collect();
        assert_eq!(
            kept, newest,
            "the oldest publications were the ones dropped"
        );
        assert_eq!(slow.missed(), COUNT - SLOW_CAPACITY as u64);
        assert!(
            slow.next().now_or_never().is_none(),
            "nothing more is buffered"
        );
        assert_eq!(publisher.handle().pubsub_metrics().dropped, 0);
        assert_eq!(publisher.handle().pubsub_metrics().sent, 3 * COUNT);
    });
}

#[test]
fn a_subscriber_the_policy_refuses_gets_nothing_and_is_told_why() {
    let policy = Policy::deny_all().allow_subject("reader", "topic:news.*");
    let publisher = PeerThread::start(
        Peer::builder(PeerId::from_name("pubsub-auth-publisher"))
            .listen("127.0.0.1:0")
            .auth(issuer(), policy),
    )
    .expect("publisher starts");
    let reader = client("reader");
    let guest = client("guest");
    let publisher_id = publisher.handle().id();
    let target = url(publisher.handle());
    block_on(async {
        for (peer, subject) in [(&reader, "reader"), (&guest, "guest")] {
            let token = issuer().issue(subject, &["viewer"], HOUR).expect("token");
            peer.handle()
                .connect_with_token(&target, &token)
                .await
                .expect("links");
        }
        let mut allowed = reader.handle().subscribe::<String>("news.world");
        let refused = guest.handle().subscribe::<String>("news.world");
        allowed
            .wait_for(publisher_id, LIMIT)
            .await
            .expect("the policy allows `reader` the topic");
        let refusal = refused.wait_for(publisher_id, LIMIT).await;
        assert!(
            matches!(&refusal, Err(RemoteError::Forbidden { block, subject, .. })
                if block == "topic:news.world" && subject == "guest"),
            "{refusal:?}"
        );
        let listed = refused.refused();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].0, publisher_id);
        assert!(matches!(listed[0].1, RemoteError::Forbidden { .. }));
        assert!(allowed.refused().is_empty());

        for text in ["one", "two", "three"] {
            let sent = publisher
                .handle()
                .publish("news.world", &text.to_owned())
                .expect("publishes");
            assert_eq!(sent, 1, "only the allowed subscriber is sent publications");
        }
        for text in ["one", "two", "three"] {
            assert_eq!(next(&mut allowed).await, text);
        }
        assert!(refused.is_empty());
        assert_eq!(guest.handle().pubsub_metrics().received, 0);
        assert_eq!(reader.handle().pubsub_metrics().received, 3);
    });
}

#[test]
fn peers_that_link_after_the_subscription_deliver_to_it() {
    let subscriber = server("pubsub-late-subscriber");
    let dialled = server("pubsub-late-dialled");
    let dialling = client("pubsub-late-dialling");
    let subscriber_url = url(subscriber.handle());
    let dialled_url = url(dialled.handle());
    block_on(async {
        // Subscribed while linked to nobody.
        let mut late = subscriber.handle().subscribe::<u64>("late");
        assert!(subscriber.handle().connected_peers().is_empty());
        // A link the subscriber opens, and one opened to it.
        subscriber
            .handle()
            .connect(&dialled_url)
            .await
            .expect("links");
        dialling
            .handle()
            .connect(&subscriber_url)
            .await
            .expect("links");
        for peer in [dialled.handle().id(), dialling.handle().id()] {
            late.wait_for(peer, LIMIT)
                .await
                .expect("a peer that linked later learns of the subscription");
        }
        assert_eq!(dialled.handle().publish("late", &1_u64), Ok(1));
        assert_eq!(next(&mut late).await, 1);
        // A publication that is not a `u64` is skipped and counted, never a panic.
        assert_eq!(dialling.handle().publish("late", "not a number"), Ok(1));
        assert_eq!(dialling.handle().publish("late", &2_u64), Ok(1));
        assert_eq!(next(&mut late).await, 2);
        assert_eq!(late.undecodable(), 1);
    });
}
