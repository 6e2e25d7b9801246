//! The hourly counts behind the frequency graph (`store::rollup`), through the real writer and
//! the real ClickHouse: a histogram over whole hours answers from the counts once they are
//! computed, counts a replayed event once, never sees another tenant, and is never stale — an
//! hour that gets late events is read from `events` until its counts are computed again.

use integration_tests::{Service, World, generator};
use schemas::{ActivityEvent, ActivityType};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const H: i64 = store::rollup::HOUR;

async fn produce(world: &World, events: &[ActivityEvent]) {
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "rollup-test").unwrap();
    let partitions = bus.partitions(&world.topics.events).await.unwrap();
    for chunk in events.chunks(500) {
        let records = pipeline::stage::encode_by_partition(chunk, &world.topics.events, partitions);
        bus.send_all(&records).await.unwrap();
    }
}

/// Waits until the counts of `hours` (of the world's tenant) cover their latest change.
async fn wait_clean(world: &World, hours: &[i64]) {
    let ch = world.clickhouse();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let clean =
            store::rollup::clean_hours(&ch, &world.tenant, hours[0], hours[hours.len() - 1] + H)
                .await
                .unwrap();
        if hours.iter().all(|h| clean.contains(h)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hours not computed: {clean:?} of {hours:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts per (hour, type) of `events` matching namespace `ns` and not `ps`, in `[from, to)`.
fn expected(
    events: &[ActivityEvent],
    tenant: &str,
    ns: &str,
    from: i64,
    to: i64,
) -> BTreeMap<(i64, String), u64> {
    let mut out = BTreeMap::new();
    for e in events {
        if e.tenant == tenant
            && e.namespace == ns
            && e.comm != "ps"
            && (from..to).contains(&e.timestamp)
        {
            *out.entry((e.timestamp.div_euclid(H) * H, e.kind.as_str().to_string()))
                .or_default() += 1;
        }
    }
    out
}

/// Non-zero counts per (bucket, type) of a histogram answer.
fn counts(h: &Value) -> BTreeMap<(i64, String), u64> {
    let buckets: Vec<i64> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_i64().unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for t in ActivityType::ALL {
        for (i, c) in h["counts"][t.as_str()]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let c = c.as_u64().unwrap();
            if c > 0 {
                out.insert((buckets[i], t.as_str().to_string()), c);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_counts_answer_whole_hours_exactly_and_never_stale() {
    let world = World::new(2).await;
    let t0 = 1_764_000_000_000_000_000 / H * H;
    // Six hours of events, a fifth of them another tenant's.
    let mut events = generator::events(61, 3000, t0, true);
    for (i, e) in events.iter_mut().enumerate() {
        e.timestamp = t0 + i as i64 * (6 * H / 3000) + 17;
        e.tenant = if i % 5 == 0 {
            "other-tenant".into()
        } else {
            world.tenant.clone()
        };
    }
    let ns = events[1].namespace.clone();
    let _writer = world.spawn_with(
        Service::Writer,
        &[
            ("AA_WRITER__ROLLUP_INTERVAL_MS", "300"),
            ("AA_WRITER__ROLLUP_SETTLE_S", "1"),
        ],
    );
    produce(&world, &events).await;
    // A replay of hours 1 and 2: stored twice until ClickHouse merges, counted once.
    let replay: Vec<ActivityEvent> = events
        .iter()
        .filter(|e| (t0 + H..t0 + 3 * H).contains(&e.timestamp))
        .cloned()
        .collect();
    produce(&world, &replay).await;
    let hours: Vec<i64> = (0..6).map(|i| t0 + i * H).collect();
    wait_clean(&world, &hours).await;

    let addr = world
        .start_tenant_query_api(pipeline::shutdown::Shutdown::new())
        .await
        .http;
    let http = reqwest::Client::new();
    // Half an hour into hour 0 to half an hour into hour 5: hours 1-4 whole, the edges not.
    let (from, to) = (t0 + H / 2, t0 + 5 * H + H / 2);
    let filter = format!("kubernetes.namespace.name = \"{ns}\" and comm != ps");
    let histogram = || async {
        let r = http
            .get(format!("http://{addr}/api/v1/activity/histogram"))
            .bearer_auth("q")
            .query(&[
                ("from", from.to_string()),
                ("to", to.to_string()),
                ("bucket", H.to_string()),
                ("filter", filter.clone()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        counts(&r.json::<Value>().await.unwrap())
    };
    let mut want = expected(&events, &world.tenant, &ns, from, to);
    assert!(
        want.len() > 10,
        "the filter matches in every hour: {want:?}"
    );
    assert_eq!(histogram().await, want, "replayed events counted once");

    // Rows that bypass the writer (no change mark) into hour 2 are not in its counts: the
    // whole hour is answered from them.
    let mut bypass = generator::events(62, 20, t0 + 2 * H + 1000, true);
    for e in &mut bypass {
        e.tenant = world.tenant.clone();
        e.namespace = ns.clone();
        e.comm = "bash".into();
    }
    integration_tests::insert_events(&world.clickhouse(), &bypass).await;
    assert_eq!(histogram().await, want, "hour 2 comes from its counts");

    // Late events into hour 3 through the writer: counted at once (the hour is read from
    // `events` while its counts are out of date), and still after they are computed again.
    let mut late = generator::events(63, 30, t0 + 3 * H + 5000, true);
    for e in &mut late {
        e.tenant = world.tenant.clone();
        e.namespace = ns.clone();
        e.comm = "curl".into();
        e.id = format!("late-{}", e.id);
    }
    produce(&world, &late).await;
    for e in &late {
        *want
            .entry((t0 + 3 * H, e.kind.as_str().to_string()))
            .or_default() += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while histogram().await != want {
        assert!(Instant::now() < deadline, "late events never counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_clean(&world, &[t0 + 3 * H]).await;
    assert_eq!(histogram().await, want, "hour 3 computed again");
    let rolled: u64 = world
        .clickhouse()
        .query_text(&format!(
            "SELECT sum(n) FROM events_hourly FINAL WHERE tenant = {} AND hour = {}",
            store::sql::quote(&world.tenant),
            t0 + 3 * H
        ))
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let in_hour = events
        .iter()
        .chain(&late)
        .filter(|e| e.tenant == world.tenant && (t0 + 3 * H..t0 + 4 * H).contains(&e.timestamp))
        .count() as u64;
    assert_eq!(
        rolled, in_hour,
        "hour 3's counts hold every event of it once"
    );
}
