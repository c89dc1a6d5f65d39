//! What an observer on the LAN records of a device's advertisement, a day apart and
//! across a rotation of the secrets: nothing in common (issue 11). The node runs in
//! this process with a calendar moved by hand; the observer is an mdns-sd daemon
//! browsing on the loopback interface only.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kith_node::Device;
use kith_node::api::Request;
use kith_node::discovery::{Calendar, SERVICE};
use kith_node::node::{self, Options};
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};

const DAY_MS: u64 = 86_400_000;

/// Everything one advertisement shows that could name the device.
#[derive(Debug, Clone)]
struct Shown {
    fullname: String,
    values: BTreeSet<String>,
}

fn observer() -> (ServiceDaemon, mdns_sd::Receiver<ServiceEvent>) {
    let daemon = ServiceDaemon::new().unwrap();
    daemon.disable_interface(IfKind::All).unwrap();
    daemon.enable_interface(IfKind::Name("lo".into())).unwrap();
    daemon.disable_interface(IfKind::IPv6).unwrap();
    let events = daemon.browse(SERVICE).unwrap();
    (daemon, events)
}

/// Waits for a resolved kith advertisement other than those in `before`.
async fn next_advert(
    events: &mdns_sd::Receiver<ServiceEvent>,
    before: &[Shown],
    deadline: Duration,
) -> Shown {
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no new advertisement within {deadline:?}");
        let Ok(Ok(event)) = tokio::time::timeout(left, events.recv_async()).await else {
            continue;
        };
        let ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        let Some(tag) = info.get_property_val_str("kith.tag") else {
            continue;
        };
        if before.iter().any(|s| s.fullname == info.get_fullname()) {
            continue;
        }
        let mut values: BTreeSet<String> = BTreeSet::new();
        let fullname = info.get_fullname().to_owned();
        let instance = fullname.trim_end_matches(&format!(".{SERVICE}")).to_owned();
        values.extend(instance.split('@').map(str::to_owned));
        values.insert(instance);
        values.insert(info.get_hostname().trim_end_matches(".local.").to_owned());
        values.insert(info.get_port().to_string());
        values.insert(tag.to_owned());
        for key in ["kith.p2p", "port.p2pj"] {
            values.insert(
                info.get_property_val_str(key)
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        return Shown { fullname, values };
    }
}

/// Asserts that the instance and stream port the node reports are those `shown`.
async fn status_shows(running: &node::Running, shown: &Shown) {
    let v: kith_node::api::status::Status = running.handle.ask(Request::Status).await.unwrap();
    let instance = v.node.xmpp_instance.as_deref().unwrap_or_default();
    let port = v.node.xmpp_port.unwrap_or_default();
    assert!(
        shown.values.contains(instance),
        "{instance} not in {shown:?}"
    );
    assert!(
        shown.values.contains(&port.to_string()),
        "{port} not in {shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_later_and_after_a_rotation_the_advertisement_shares_nothing_with_before() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
    let calendar = Calendar::manual(20_000 * DAY_MS + 3_600_000);
    let (daemon, events) = observer();
    let running = node::start(
        device,
        Options {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            peers: vec![],
            mdns: true,
            mdns_interfaces: vec!["lo".into()],
            xmpp_port: None,
            xmpp_lan: false,
            calendar: calendar.clone(),
        },
    )
    .await
    .unwrap();
    let first = next_advert(&events, &[], Duration::from_secs(30)).await;
    status_shows(&running, &first).await;

    calendar.set(20_001 * DAY_MS + 3_600_000);
    let second = next_advert(
        &events,
        std::slice::from_ref(&first),
        Duration::from_secs(30),
    )
    .await;
    let shared: Vec<_> = first.values.intersection(&second.values).collect();
    assert!(shared.is_empty(), "a day apart, both show {shared:?}");
    status_shows(&running, &second).await;

    running
        .handle
        .request(Request::Rotate, |_, _| {})
        .await
        .unwrap();
    let third = next_advert(
        &events,
        &[first.clone(), second.clone()],
        Duration::from_secs(30),
    )
    .await;
    let shared: Vec<_> = second.values.intersection(&third.values).collect();
    assert!(shared.is_empty(), "across a rotation, both show {shared:?}");

    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
    let _ = daemon.shutdown();
}
