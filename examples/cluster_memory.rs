//! Redis memory per ownership record (BENCHMARKS.md "Cluster"): publishes
//! N records through tether's own publisher into a Redis Cluster whose
//! masters are the seeds given, and reads `used_memory` (INFO memory) of
//! every master before and after, and `MEMORY USAGE` of some buckets. Then,
//! for comparison, the layout not chosen: one string key with its own TTL
//! per record. Every master is FLUSHALLed first: point it at a test cluster
//! only (benches/cluster_memory.sh starts one on loopback).
//!
//!   cargo run --example cluster_memory -- N redis://127.0.0.1:7101 redis://...

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::cluster::keys::bucket_key;
use tether::cluster::{BindingChange, Change, ClusterSection, Publisher, RecordId, Stats};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .ok_or("usage: cluster_memory N SEED...")?
        .parse()?;
    let seeds: Vec<String> = args.collect();
    if seeds.is_empty() {
        return Err("give the masters' addresses, e.g. redis://127.0.0.1:7101".into());
    }
    let mut masters: Vec<redis::Connection> = seeds
        .iter()
        .map(|s| redis::Client::open(s.as_str())?.get_connection())
        .collect::<Result<_, _>>()?;
    // About 16 records per bucket, as cluster.buckets advises.
    let buckets = (n / 16).next_power_of_two().clamp(16, 1 << 24) as u32;

    flush(&mut masters)?;
    let before = used(&mut masters)?;
    let stats = Arc::new(Stats::default());
    let cfg = ClusterSection {
        enabled: true,
        redis: seeds.clone(),
        advertise: "127.0.0.1:5060".into(),
        buckets,
        backlog: n as usize + 1,
        queue: 65_536,
        ..ClusterSection::default()
    };
    let p = Publisher::start(&cfg, stats.clone())?;
    let h = p.handle();
    let t0 = Instant::now();
    for i in 0..n {
        let aor = format!("user{i:07}@example.com");
        let dev = format!("urn:uuid:00000000-0000-4000-8000-{i:012}");
        let c = BindingChange {
            id: RecordId::for_contact(&aor, Some(&dev), None, ""),
            change: Change::Set {
                core: (i % 4) as u16,
                slot: i as u32,
                gen: 1,
                expires_in: 3600,
                restored: false,
            },
        };
        // The queue is bounded: pace on it rather than drop.
        while stats.owned.load(Ordering::Relaxed) + 60_000 < i {
            std::thread::sleep(Duration::from_millis(1));
        }
        h.send(c);
    }
    while stats.writes.load(Ordering::Relaxed) < n || stats.backlog.load(Ordering::Relaxed) > 0 {
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(format!("not all written after 300 s: {stats:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = t0.elapsed().as_secs_f64();
    p.shutdown();
    let after = used(&mut masters)?;
    let dropped = stats.queue_full.load(Ordering::Relaxed);
    let keys = dbsize(&mut masters)?;
    let mut sample = 0u64;
    let mut sampled = 0u64;
    for i in 0..64u64 {
        let aor = format!("user{:07}@example.com", i * 997 % n.max(1));
        let key = bucket_key(RecordId::for_contact(&aor, None, None, "").aor, buckets);
        for m in masters.iter_mut() {
            // The key lives on one master; the others answer MOVED.
            if let Ok(Some(b)) = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query::<Option<u64>>(m)
            {
                let len: u64 = redis::cmd("HLEN").arg(&key).query(m)?;
                sample += b;
                sampled += len;
                break;
            }
        }
    }
    println!(
        "bucketed: {n} records in {keys} buckets (cluster.buckets = {buckets}) written in {secs:.1} s \
         ({:.0}/s), queue drops {dropped}",
        n as f64 / secs
    );
    println!(
        "bucketed: used_memory +{} B = {:.1} B per record; MEMORY USAGE of sampled buckets {:.1} B per record",
        after - before,
        (after - before) as f64 / n as f64,
        sample as f64 / sampled.max(1) as f64
    );

    // The layout not chosen: one key per record, with its own TTL.
    flush(&mut masters)?;
    let before = used(&mut masters)?;
    let client = redis::cluster::ClusterClient::new(seeds.clone())?;
    let mut conn = client.get_connection()?;
    let mut i = 0;
    while i < n {
        let mut pipe = redis::cluster::cluster_pipe();
        for j in i..(i + 2000).min(n) {
            let aor = format!("user{j:07}@example.com");
            let dev = format!("urn:uuid:00000000-0000-4000-8000-{j:012}");
            let id = RecordId::for_contact(&aor, Some(&dev), None, "");
            let mut key = b"tether:r:".to_vec();
            key.extend_from_slice(&id.field());
            pipe.cmd("SET")
                .arg(key)
                .arg(format!("1:{}:{}", j % 4, 1_800_000_000u64))
                .arg("EX")
                .arg(3600)
                .ignore();
        }
        pipe.exec(&mut conn)?;
        i = (i + 2000).min(n);
    }
    let after = used(&mut masters)?;
    println!(
        "one key per record: used_memory +{} B = {:.1} B per record",
        after - before,
        (after - before) as f64 / n as f64
    );
    flush(&mut masters)?;
    Ok(())
}

fn flush(masters: &mut [redis::Connection]) -> redis::RedisResult<()> {
    for m in masters {
        redis::cmd("FLUSHALL").arg("SYNC").exec(m)?;
    }
    Ok(())
}

/// Sum of `used_memory` over the masters.
fn used(masters: &mut [redis::Connection]) -> Result<u64, Box<dyn std::error::Error>> {
    let mut sum = 0;
    for m in masters {
        let info: String = redis::cmd("INFO").arg("memory").query(m)?;
        let v = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .ok_or("no used_memory in INFO")?;
        sum += v.trim().parse::<u64>()?;
    }
    Ok(sum)
}

fn dbsize(masters: &mut [redis::Connection]) -> redis::RedisResult<u64> {
    let mut sum = 0;
    for m in masters {
        sum += redis::cmd("DBSIZE").query::<u64>(m)?;
    }
    Ok(sum)
}
