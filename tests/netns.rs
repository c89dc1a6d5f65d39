//! Two nodes in network namespaces of their own, joined by a veth pair, find each
//! other by XEP-0174 mDNS on the veth interfaces alone. Needs root (`ip netns`):
//! where namespaces cannot be created the test says so and passes, unless
//! `KITH_REQUIRE_NETNS=1` (set by `.ci/run`), which turns that into a failure.

use std::process::Command;

use crate::nodes::Device;

/// Two namespaces joined by a veth pair; deleted on drop, also when the test fails.
pub(crate) struct Net {
    pub(crate) ns: [String; 2],
    pub(crate) veth: [String; 2],
    pub(crate) ip: [String; 2],
}

/// Runs `ip args…`; what it printed on stderr when it fails.
pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// The namespaces, or why they cannot be made; `tag` tells apart those of
    /// tests running at once.
    pub(crate) fn create(tag: u32) -> Result<Self, String> {
        let id = (std::process::id() * 7 + tag) % 100_000;
        let subnet = 20 + id % 200;
        let net = Self {
            ns: [format!("kith{id}a"), format!("kith{id}b")],
            veth: [format!("kv{id}a"), format!("kv{id}b")],
            ip: [format!("10.200.{subnet}.1"), format!("10.200.{subnet}.2")],
        };
        for ns in &net.ns {
            ip(&["netns", "add", ns])?;
        }
        ip(&[
            "link",
            "add",
            &net.veth[0],
            "netns",
            &net.ns[0],
            "type",
            "veth",
            "peer",
            "name",
            &net.veth[1],
            "netns",
            &net.ns[1],
        ])?;
        for i in 0..2 {
            let ns = &net.ns[i];
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", net.ip[i]),
                "dev",
                &net.veth[i],
            ])?;
            ip(&["-n", ns, "link", "set", &net.veth[i], "up"])?;
        }
        Ok(net)
    }

    pub(crate) fn prefix(&self, i: usize) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.ns[i]]
    }

    /// The namespaces, or `None` (the test then passes, saying so) where they
    /// cannot be made, unless `KITH_REQUIRE_NETNS=1` (CI) makes that a failure.
    pub(crate) fn or_skip(tag: u32) -> Option<Self> {
        match Self::create(tag) {
            Ok(n) => Some(n),
            Err(e) => {
                assert!(
                    std::env::var("KITH_REQUIRE_NETNS").as_deref() != Ok("1"),
                    "network namespaces are required (KITH_REQUIRE_NETNS=1) but: {e}"
                );
                eprintln!("SKIPPED: cannot create network namespaces (run as root): {e}");
                None
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[test]
fn nodes_in_namespaces_find_each_other_by_mdns_on_veth() {
    let Some(net) = Net::or_skip(0) else { return };
    let listen = |i: usize| format!("/ip4/{}/tcp/0", net.ip[i]);
    let mut a = Device::new().with_prefix(&net.prefix(0));
    let mut b = Device::new().with_prefix(&net.prefix(1));
    a.ok(&["init", "--jid", "romeo@montague.lit", "--name", "a"]);
    a.start_with(&listen(0), &["--mdns-interface", &net.veth[0]]);
    b.join(&a, "b");
    b.start_with(&listen(1), &["--mdns-interface", &net.veth[1]]);
    b.wait("the secrets", |b| {
        let s = b.status();
        s["waiting_for_secret"] == 0 && s["records"]["keys"].as_u64().unwrap_or(0) > 0
    });

    // Both restart on ports of their own choosing (not the guise's ports, which own
    // devices work out): the addresses they remember are stale, so only mDNS on the
    // veth pair can bring them together again. The namespaces are this test's own,
    // so the ports are free.
    a.stop();
    b.stop();
    let fixed = |i: usize| format!("/ip4/{}/tcp/{}", net.ip[i], 40_001 + i);
    a.start_with(&fixed(0), &["--mdns-interface", &net.veth[0]]);
    b.start_with(&fixed(1), &["--mdns-interface", &net.veth[1]]);
    a.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    b.wait("the contact over mDNS-found connection", |b| {
        b.jids() == ["juliet@capulet.lit"]
    });
    let seen = format!("{}{}", a.log(), b.log());
    assert!(seen.contains("seen on mDNS"), "discovery not used:\n{seen}");
    let xmpp = b.status()["node"]["xmpp_port"]
        .as_u64()
        .expect("an XEP-0174 port");
    assert!(xmpp > 0);
    drop((a, b));
}
