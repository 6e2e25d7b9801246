//! Trace assignment against ground truth: the scenario suite (Falco, Tetragon and audit
//! inputs parsed by ingest's own parsers) through the correlation engine, partitioned and
//! batched as in the service. Prints precision and recall; both must be >= 99.5%, with
//! ambiguous links reported apart, and never given to the wrong user.

use integration_tests::scenarios::{self, Truth};

const BASE: i64 = 1_767_000_000_000_000_000;

fn run(
    crash: Option<f64>,
) -> (
    scenarios::Score,
    scenarios::Correlated,
    Vec<scenarios::Labelled>,
) {
    let reps = std::env::var("AA_SUITE_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let suite = scenarios::suite(7, reps, BASE);
    eprintln!("suite built");
    let labelled = scenarios::parse(&suite, "acme", "prod-eu");
    eprintln!("parsed {}", labelled.len());
    let events: Vec<_> = labelled.iter().map(|l| l.event.clone()).collect();
    let out = scenarios::correlate(&events, 4, 16, crash);
    eprintln!("correlated");
    let score = scenarios::score(&labelled, &out.events);
    (score, out, labelled)
}

#[test]
fn precision_and_recall_on_the_scenario_suite() {
    let (score, out, labelled) = run(None);
    println!("{}", score.report());
    assert!(
        score.correct > 2000,
        "the suite is substantial: {}",
        score.correct
    );
    assert!(
        score.precision() >= 0.995,
        "precision {}\n{}",
        score.precision(),
        score.report()
    );
    assert!(
        score.recall() >= 0.995,
        "recall {}\n{}",
        score.recall(),
        score.report()
    );
    // Concurrent sessions in one pod: reported ambiguous, never attributed to the wrong user.
    let c = score.per_scenario["concurrent execs in one pod"];
    assert_eq!(c[1], 0, "no misattribution");
    assert!(c[3] > 0, "concurrent sessions are reported ambiguous");
    // The app whose entrypoint is a shell script never becomes a session.
    let app = score.per_scenario["entrypoint script app"];
    assert_eq!((app[0], app[1], app[3]), (0, 0, 0));
    assert!(app[4] > 0);
    // Every origin carries its trace, and its trace record names the user.
    for l in labelled
        .iter()
        .filter(|l| l.origin && l.truth != Truth::None)
    {
        let e = &out.events[&l.event.id];
        assert!(
            !e.trace_id.is_empty(),
            "{}: origin without trace",
            l.scenario
        );
        let t = &out.traces[&e.trace_id];
        if l.event.kind == schemas::ActivityType::Kubernetes {
            assert_eq!(t.user, l.event.user_name);
            assert_eq!(t.source_addresses, l.event.source_addresses);
            // Both stages of the request are merged into the origin entry.
            if l.event.sub_resource == "exec" {
                assert!(
                    e.stages_started > 0 && e.stages_completed > e.stages_started,
                    "{}",
                    l.scenario
                );
            }
        } else {
            assert!(!t.user.is_empty(), "{}: login user", l.scenario);
        }
    }
    // ssh logins name the client from the accept.
    let ssh = out
        .traces
        .values()
        .filter(|t| t.kind == "ssh")
        .collect::<Vec<_>>();
    assert!(!ssh.is_empty());
    assert!(
        ssh.iter().all(|t| t.source_addresses == ["198.51.100.77"]),
        "{ssh:?}"
    );
    // Trace records count what their session did.
    let exec = out
        .traces
        .values()
        .filter(|t| t.kind == "exec")
        .max_by_key(|t| t.commands)
        .expect("an exec trace");
    assert_eq!(exec.commands, 7, "{exec:?}");
    assert!(exec.fileaccesses > 0 && exec.connections > 0, "{exec:?}");
    // Login shell ids are filled in where the agent (Tetragon) sent none.
    let tetra = out
        .events
        .values()
        .find(|e| e.source == schemas::Source::Tetragon && e.comm == "id")
        .unwrap();
    assert!(
        tetra.login_shell_id.is_some() && tetra.login_shell_distance == Some(2),
        "{tetra:?}"
    );
}

#[test]
fn a_crash_and_restore_mid_session_changes_nothing() {
    let (clean, straight, _) = run(None);
    let (crashed, restored, _) = run(Some(0.6));
    assert!(restored.replayed > 0, "the crash replays input");
    println!("after crash + restore: {}", crashed.report());
    assert_eq!(clean.correct, crashed.correct);
    assert_eq!(clean.wrong, crashed.wrong);
    assert_eq!(clean.ambiguous, crashed.ambiguous);
    for (id, e) in &straight.events {
        let r = &restored.events[id];
        assert_eq!(
            (&r.trace_id, r.revision),
            (&e.trace_id, e.revision),
            "event {id}: same trace and revision after replay"
        );
    }
    for (id, t) in &straight.traces {
        assert_eq!(&restored.traces[id], t, "trace record {id}");
    }
}

#[test]
fn trace_ids_are_deterministic_across_runs_and_batching() {
    let (_, a, _) = run(None);
    let suite = scenarios::suite(7, 20, BASE);
    let labelled = scenarios::parse(&suite, "acme", "prod-eu");
    let events: Vec<_> = labelled.iter().map(|l| l.event.clone()).collect();
    let b = scenarios::correlate(&events, 4, 1, None);
    for (id, e) in &a.events {
        assert_eq!(b.events[id].trace_id, e.trace_id, "event {id}");
    }
}
