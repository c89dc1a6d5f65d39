//! kith-node: the program that runs on each device. One tokio task will own the
//! `kith_protocol` sync engine, the libp2p swarm, the mdns-sd (XEP-0174) daemon and the
//! SQLite store; this crate is a placeholder until that work lands.
