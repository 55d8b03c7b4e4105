//! tether as a cluster on Redis Cluster: the 3-master test bed, ownership
//! records published by the registrar, the backlog across a Redis outage.

mod common;

use common::redis_bed::{have_redis, Cluster};

/// The bed itself: three masters, every slot served, a key written through
/// one master readable through the cluster.
#[test]
fn redis_bed_is_a_working_cluster() {
    if !have_redis("redis_bed_is_a_working_cluster") {
        return;
    }
    let mut bed = Cluster::start("bed");
    let info = bed.cli(0, &["cluster", "info"]);
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
    assert!(info.contains("cluster_size:3"), "{info}");
    // -c follows MOVED, so the key lands on whichever master owns its slot.
    assert_eq!(bed.cli(1, &["-c", "set", "bed:k", "v"]).trim(), "OK");
    assert_eq!(bed.cli(2, &["-c", "get", "bed:k"]).trim(), "v");
    bed.stop();
    assert_eq!(bed.cli(0, &["ping"]).trim(), "", "a stopped master answers");
    bed.restart();
    assert_eq!(bed.cli(0, &["ping"]).trim(), "PONG");
}
