//! The web UI in a real browser (headless Chromium through ChromeDriver) against the real query
//! API and ClickHouse: sign-in, the list and its total, data-source counts and toggles, the
//! frequency graph and drag-to-zoom, the filter bar (autocompletion of names and values, errors
//! shown where they are), quick include/exclude, details, the trace, groups scoping the view,
//! deep links, live mode, and a team restricted to its scope.

use integration_tests::webdriver::Browser;
use integration_tests::{World, generator};
use schemas::ActivityType;
use serde_json::json;

const T0: i64 = 1_764_000_000_000_000_000;

fn rows_js(body: &str) -> String {
    format!("const rows = [...document.querySelectorAll('#rows tr')]; {body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_page_in_a_browser() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    let mut events = generator::events(95, 300, T0, true);
    for e in &mut events {
        e.tenant.clone_from(&world.tenant);
        e.cluster = "prod-eu".into();
    }
    let exec = events
        .iter()
        .position(|e| e.kind == ActivityType::Kubernetes && e.sub_resource == "exec")
        .unwrap();
    let cmds: Vec<usize> = (exec + 1..events.len())
        .filter(|i| events[*i].kind == ActivityType::Command)
        .take(2)
        .collect();
    for i in std::iter::once(exec).chain(cmds.iter().copied()) {
        events[i].trace_id = "trace-ui".into();
        events[i].trace_confidence = 1.0;
    }
    integration_tests::insert_events(&ch, &events).await;
    let rec = schemas::TraceRecord {
        tenant: world.tenant.clone(),
        trace_id: "trace-ui".into(),
        kind: "exec".into(),
        origin_id: events[exec].id.clone(),
        user: "alice@example.com".into(),
        groups: vec!["system:masters".into()],
        source_addresses: vec!["203.0.113.24".into()],
        start: events[exec].timestamp,
        end: events[cmds[1]].timestamp,
        commands: 2,
        confidence: 1.0,
        revision: 1,
        ..Default::default()
    };
    integration_tests::insert_traces(&ch, &[&rec]).await;
    let tenant = &world.tenant;
    let shutdown = pipeline::shutdown::Shutdown::new();
    let bound = world
        .start_query_api(
            &format!(
                "[[token]]\ntoken = \"ui\"\ntenant = \"{tenant}\"\n\
                 [[token]]\ntoken = \"team\"\ntenant = \"{tenant}\"\n\
                 scope = 'kubernetes.namespace.name = \"shop\"'\npermissions = [\"commands.read\"]\n"
            ),
            shutdown.clone(),
        )
        .await;
    let base = format!("http://{}", bound.http);
    let to = (T0 + 10_000_000_000).to_string();
    let page = format!("{base}/?from=0&to={to}");
    let b = Browser::start().await;

    // Sign in.
    b.goto(&page).await;
    b.wait_for(
        "the sign-in form",
        "return !document.getElementById('signin').hidden",
    )
    .await;
    b.type_into("#token", "ui\u{E007}").await;
    b.wait_for(
        "the list",
        &rows_js("return rows.length === 100 && document.getElementById('total').innerText"),
    )
    .await;
    assert_eq!(b.text("#total").await, "300 entries");
    // Data sources with their counts; one line per data source.
    for t in ActivityType::ALL {
        let n = events.iter().filter(|e| e.kind == t).count();
        let shown = b
            .wait_for(
                "source counts",
                &format!(
                    "const c = document.querySelector('#sources [data-type={t}] .count'); \
                     return c && c.innerText !== '…' && c.innerText"
                ),
            )
            .await;
        assert_eq!(shown, json!(n.to_string()), "{t}");
    }
    assert_eq!(
        b.eval(
            "return document.querySelectorAll('#graph polyline').length",
            json!([])
        )
        .await,
        4
    );
    b.screenshot(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots/activity.png"),
    )
    .await;

    // The filter bar: a filter, then autocompletion of an attribute and a value.
    b.type_into("#filter", "comm = \"bash\"\u{E007}").await;
    let bash = events.iter().filter(|e| e.comm == "bash").count();
    b.wait_for(
        "bash entries",
        &rows_js(&format!(
            "return rows.length === {bash} && rows.every(r => r.innerText.includes('bash'))"
        )),
    )
    .await;
    assert!(b.url().await.contains("filter=comm"));
    b.clear("#filter").await;
    b.type_into("#filter", "kubernetes.namesp").await;
    b.wait_for(
        "attribute suggestions",
        "const s = document.getElementById('suggest'); \
         return !s.hidden && s.innerText.includes('kubernetes.namespace.name')",
    )
    .await;
    b.type_into("#filter", "\u{E004}").await; // Tab takes the suggestion
    b.type_into("#filter", "= sh").await;
    b.wait_for(
        "value suggestions",
        "const s = document.getElementById('suggest'); return !s.hidden && s.innerText.includes('shop')",
    )
    .await;
    b.type_into("#filter", "\u{E004}").await;
    let text = b
        .eval("return document.getElementById('filter').value", json!([]))
        .await;
    assert_eq!(text, json!("kubernetes.namespace.name = \"shop\" "));
    b.type_into("#filter", "\u{E007}").await;
    let shop = events.iter().filter(|e| e.namespace == "shop").count();
    b.wait_for(
        "shop entries",
        &format!("return document.getElementById('total').innerText === '{shop} entries'"),
    )
    .await;
    // An error is shown where it is.
    b.clear("#filter").await;
    b.type_into("#filter", "comn = 1\u{E007}").await;
    let err = b
        .wait_for(
            "the filter error",
            "const e = document.getElementById('filter-error'); return !e.hidden && e.innerText",
        )
        .await;
    let err = err.as_str().unwrap();
    assert!(err.contains("did you mean \"comm\""), "{err}");
    assert!(err.ends_with("comn = 1\n^"), "{err:?}");

    // Quick exclude from a row.
    b.clear("#filter").await;
    b.type_into("#filter", "\u{E007}").await;
    b.wait_for(
        "all entries",
        "return document.getElementById('total').innerText === '300 entries'",
    )
    .await;
    let ns = b
        .eval(
            "const v = document.querySelector('#rows tr .val[data-attr=\"kubernetes.namespace.name\"]'); \
             v.querySelector('button[data-op=\"!=\"]').click(); return v.innerText.replace(/[=≠]/g, '').trim();",
            json!([]),
        )
        .await;
    let ns = ns.as_str().unwrap().to_string();
    let rest = events.iter().filter(|e| e.namespace != ns).count();
    b.wait_for(
        "the exclusion",
        &format!("return document.getElementById('total').innerText === '{rest} entries'"),
    )
    .await;
    assert!(b.url().await.contains("%21%3D"), "the filter is in the URL");

    // Quick include, then remove it by editing the filter text.
    b.eval(
        "document.querySelector('#rows tr .val[data-attr=\"comm\"] button[data-op=\"=\"]').click()",
        json!([]),
    )
    .await;
    b.wait_for(
        "the inclusion",
        &rows_js("return (new URLSearchParams(location.search).get('filter') || '').includes('comm = ') && rows.length > 0 && rows.length < 100"),
    )
    .await;
    b.clear("#filter").await;
    b.type_into("#filter", "\u{E007}").await;
    b.wait_for(
        "all entries again",
        "return document.getElementById('total').innerText === '300 entries'",
    )
    .await;

    // Page through the list by scrolling it.
    b.eval(
        "const l = document.getElementById('list'); l.scrollTop = l.scrollHeight;",
        json!([]),
    )
    .await;
    b.wait_for("the second page", &rows_js("return rows.length === 200"))
        .await;
    b.eval(
        "const l = document.getElementById('list'); l.scrollTop = l.scrollHeight;",
        json!([]),
    )
    .await;
    b.wait_for(
        "the last page",
        &rows_js("return rows.length === 300 && document.getElementById('more').innerText === 'End of range'"),
    )
    .await;
    let ids = b
        .eval(
            &rows_js("return new Set(rows.map(r => r.dataset.id)).size"),
            json!([]),
        )
        .await;
    assert_eq!(ids, 300, "no entry twice across pages");

    // Toggle a data source off.
    b.goto(&page).await;
    b.wait_for("the list", &rows_js("return rows.length === 100"))
        .await;
    b.click("#sources [data-type=kubernetes]").await;
    b.wait_for(
        "no kube execs",
        &rows_js(&format!(
            "return document.getElementById('total').innerText === '{} entries' && \
             rows.every(r => !r.querySelector('.type.kubernetes'))",
            300 - events
                .iter()
                .filter(|e| e.kind == ActivityType::Kubernetes)
                .count()
        )),
    )
    .await;
    assert_eq!(
        b.eval(
            "return document.querySelectorAll('#graph polyline').length",
            json!([])
        )
        .await,
        3
    );

    // One data source: its own columns.
    b.goto(&format!("{page}&types=connection")).await;
    b.wait_for(
        "connection columns",
        &rows_js(
            "const head = document.getElementById('head').innerText; \
             return rows.length > 0 && head.includes('Server') && head.includes('Client') && \
             rows.every(r => r.dataset.type === 'connection')",
        ),
    )
    .await;

    // Details of the kube exec, then its trace.
    b.goto(&format!("{page}&entry={}", events[exec].id)).await;
    b.wait_for(
        "the details",
        "return !document.getElementById('details').hidden && !document.getElementById('trace-button').hidden",
    )
    .await;
    let details = b.text("#detail-body").await;
    assert!(
        details.contains("KUBERNETES REQUEST") || details.contains("Kubernetes request"),
        "{details}"
    );
    assert!(details.contains(&events[exec].user_name), "{details}");
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    b.screenshot(&shots.join("details.png")).await;
    b.click("#trace-button").await;
    let trace = b
        .wait_for(
            "the trace",
            "const t = document.getElementById('trace'); \
             return !t.hidden && document.querySelectorAll('#trace .tree div').length === 3 && t.innerText",
        )
        .await;
    let trace = trace.as_str().unwrap();
    assert!(
        trace.contains("alice@example.com") && trace.contains("203.0.113.24"),
        "{trace}"
    );
    assert!(trace.contains("100%"), "{trace}");
    assert!(b.url().await.contains("trace="));
    b.screenshot(&shots.join("trace.png")).await;
    // A deep link opens the trace directly.
    b.goto(&format!("{page}&trace={}", events[cmds[1]].id))
        .await;
    b.wait_for(
        "the linked trace",
        "return document.getElementById('trace-body').innerText.includes('alice@example.com')",
    )
    .await;

    // Groups scope the view.
    b.goto(&page).await;
    b.wait_for(
        "groups",
        "return document.querySelectorAll('#group-tree a').length",
    )
    .await;
    b.click("#group-tree a[data-level=namespace]").await;
    b.wait_for(
        "the scope",
        "return document.getElementById('scope').value.includes('kubernetes.namespace.name')",
    )
    .await;
    assert!(b.url().await.contains("scope="));

    // Drag across the graph to zoom in.
    b.goto(&format!("{base}/?from={T0}&to={}", T0 + 400_000_000))
        .await;
    b.wait_for(
        "the graph",
        "return document.querySelectorAll('#graph polyline').length",
    )
    .await;
    b.drag("#graph", 200, 600).await;
    let zoomed = b
        .wait_for(
            "the zoomed range",
            &format!(
                "const p = new URLSearchParams(location.search); \
                 return p.get('from') !== '{T0}' && p.get('from')"
            ),
        )
        .await;
    let from: i64 = zoomed.as_str().unwrap().parse().unwrap();
    assert!(from > T0 && from < T0 + 400_000_000, "{from}");

    // Live: new entries appear as they arrive.
    b.goto(&format!("{base}/?range=1h&live=1&types=command"))
        .await;
    b.wait_for(
        "live mode",
        "return document.getElementById('live').checked",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let now = query_api::query::now_ns();
    let mut fresh = generator::events(96, 30, now, true);
    for (i, e) in fresh.iter_mut().enumerate() {
        e.tenant.clone_from(tenant);
        e.id = format!("fresh-{i}");
        e.received_timestamp = now + 1_000_000_000;
    }
    integration_tests::insert_events(&ch, &fresh).await;
    let n = fresh
        .iter()
        .filter(|e| e.kind == ActivityType::Command)
        .count();
    b.wait_for(
        "live entries",
        &format!("return document.querySelectorAll('#rows tr.fresh').length === {n}"),
    )
    .await;

    // A team sees its scope only, and the data sources it may read.
    b.click("#signout").await;
    b.wait_for(
        "sign-in",
        "return !document.getElementById('signin').hidden",
    )
    .await;
    b.type_into("#token", "team\u{E007}").await;
    b.goto(&page).await;
    let team = events
        .iter()
        .filter(|e| e.namespace == "shop" && e.kind == ActivityType::Command)
        .count();
    b.wait_for(
        "the team's entries",
        &rows_js(&format!(
            "return document.getElementById('total').innerText === '{team} entries' && \
             rows.every(r => r.innerText.includes(' / shop / ') && r.querySelector('.type.command'))"
        )),
    )
    .await;
    let disabled = b
        .eval(
            "return [...document.querySelectorAll('#sources button[disabled]')].map(b => b.dataset.type)",
            json!([]),
        )
        .await;
    assert_eq!(disabled, json!(["connection", "fileaccess", "kubernetes"]));
    shutdown.cancel();
}
