//! ClickHouse unavailable while events keep arriving: the writer stores nothing, commits
//! nothing, retries with backoff, and once ClickHouse is back every event is stored exactly
//! once. The outage is a proxy in front of the shared ClickHouse that refuses connections, so
//! other tests keep their server.

use integration_tests::{Service, World, free_port, generator};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to ClickHouse's HTTP port that can be switched off: new connections are
/// refused and established ones cut.
async fn proxy(up: Arc<AtomicBool>) -> u16 {
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let target = integration_tests::clickhouse_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if !up.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let target = target.clone();
            let up = up.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&target).await {
                    // Established connections are cut too when the switch goes off.
                    let down = async {
                        while up.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down => {}
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_rides_out_a_clickhouse_outage() {
    let world = World::new(2).await;
    let up = Arc::new(AtomicBool::new(true));
    let port = proxy(up.clone()).await;
    let url = format!("http://127.0.0.1:{port}");
    let writer = world.spawn_with(
        Service::Writer,
        &[("AA_WRITER__CLICKHOUSE__URL", url.as_str())],
    );
    // Let the writer start (it migrates through the proxy), then take ClickHouse away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    up.store(false, Ordering::SeqCst);

    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "outage-test").unwrap();
    let partitions = bus.partitions(&world.topics.events).await.unwrap();
    let mut events = generator::events(21, 20_000, 1_764_000_000_000_000_000, true);
    for e in &mut events {
        e.tenant.clone_from(&world.tenant);
        e.cluster.clone_from(&world.cluster);
    }
    for chunk in events.chunks(2_000) {
        let records = pipeline::stage::encode_by_partition(chunk, &world.topics.events, partitions);
        bus.send_all(&records).await.unwrap();
    }
    // Down for a while: nothing can be stored.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        world.count().await,
        0,
        "nothing stored while ClickHouse is unreachable"
    );

    up.store(true, Ordering::SeqCst);
    let n = world.wait_count(20_000, Duration::from_secs(120)).await;
    assert_eq!(n, 20_000, "every event stored once ClickHouse is back");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.count().await, 20_000);
    drop(writer);
}
