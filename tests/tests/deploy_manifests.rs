//! The Kubernetes manifests under `deploy/k8s/` parse into the Kubernetes API types (a typo in a
//! field fails: each object must serialize back to exactly what the file says), the
//! kustomization lists every file, the service configs in the ConfigMap parse into the
//! services' own config types, and every reference between objects (ConfigMap keys, Secret,
//! ports, Services, scale targets, the ServiceMonitor's port) points at something that exists.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

/// The documents of a YAML file (separated by `---` lines), comments-only ones left out.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    text.split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

/// Parses `doc` as `T` and checks it serializes back to the same document.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: {} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back, doc,
        "{file}: {} {} has fields the API does not know (or misspelled)",
        doc["kind"], doc["metadata"]["name"]
    );
    t
}

#[test]
fn manifests_parse_and_reference_what_exists() {
    let kustomization = &documents("kustomization.yaml")[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "the kustomization lists every manifest");

    let (mut deployments, mut services, mut configmaps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hpas, mut ingresses, mut monitors) = (Vec::new(), Vec::new(), Vec::new());
    let mut kinds = BTreeMap::<String, usize>::new();
    let mut jobs = Vec::new();
    for file in &listed {
        for doc in documents(file) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            *kinds.entry(kind.clone()).or_default() += 1;
            match kind.as_str() {
                "Namespace" => drop(typed::<Namespace>(file, &doc)),
                "ConfigMap" => configmaps.push(typed::<ConfigMap>(file, &doc)),
                "Secret" => drop(typed::<Secret>(file, &doc)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(file, &doc)),
                "ClusterRole" => drop(typed::<ClusterRole>(file, &doc)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(file, &doc)),
                "Deployment" => deployments.push(typed::<Deployment>(file, &doc)),
                "Service" => services.push(typed::<Service>(file, &doc)),
                "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(file, &doc)),
                "HorizontalPodAutoscaler" => {
                    hpas.push(typed::<HorizontalPodAutoscaler>(file, &doc))
                }
                "Ingress" => ingresses.push(typed::<Ingress>(file, &doc)),
                "Job" => jobs.push(typed::<Job>(file, &doc)),
                // a CRD (Prometheus Operator): checked by hand below
                "ServiceMonitor" => monitors.push(doc),
                other => panic!("{file}: unexpected kind {other}"),
            }
        }
    }
    for (kind, n) in [
        ("Deployment", 6),
        ("Service", 6),
        ("PodDisruptionBudget", 6),
        ("HorizontalPodAutoscaler", 6),
    ] {
        assert_eq!(kinds.get(kind), Some(&n), "{kind}: {kinds:?}");
    }

    // Every service's config parses into its own type, and listens where the pod says.
    let config = configmaps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("activity-audit-config"))
        .unwrap()
        .data
        .clone()
        .unwrap();
    let listen_ports = |name: &str| -> Vec<u16> {
        let text = &config[&format!("{name}.toml")];
        match name {
            "ingest" => {
                let c: ingest::config::IngestConfig = toml::from_str(text).unwrap();
                vec![c.listen.port(), c.grpc_listen.port(), c.ops.listen.port()]
            }
            "enricher" => {
                let c: enricher::EnricherConfig = toml::from_str(text).unwrap();
                assert!(!c.clusters.is_empty());
                vec![c.ops.listen.port()]
            }
            "correlator" => {
                let c: correlator::CorrelatorConfig = toml::from_str(text).unwrap();
                vec![c.ops.listen.port()]
            }
            "writer" => {
                let c: store::writer::WriterConfig = toml::from_str(text).unwrap();
                vec![c.ops.listen.port()]
            }
            "export" => {
                let c: export::ExportConfig = toml::from_str(text).unwrap();
                c.validate().unwrap();
                assert!(c.exports.iter().any(|e| e.topic.contains("{tenant}")));
                vec![c.ops.listen.port()]
            }
            "query-api" => {
                let c: query_api::QueryConfig = toml::from_str(text).unwrap();
                vec![c.listen.port(), c.grpc_listen.port(), c.ops.listen.port()]
            }
            other => panic!("no config type for {other}"),
        }
    };
    let mut container_ports = BTreeMap::new();
    for d in &deployments {
        let name = d.metadata.name.clone().unwrap();
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let env: BTreeMap<String, String> = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        let cfg_path = env
            .iter()
            .find(|(k, _)| k.ends_with("_CONFIG"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name}: no config path"));
        assert_eq!(cfg_path, format!("/etc/activity-audit/{name}.toml"));
        let ports: BTreeMap<String, i32> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        let mut declared: Vec<u16> = ports.values().map(|p| *p as u16).collect();
        declared.sort();
        let mut listens = listen_ports(&name);
        listens.sort();
        assert_eq!(
            declared, listens,
            "{name}: container ports = the ports it listens on"
        );
        assert!(ports.contains_key("ops"), "{name}: probes use the ops port");
        let volumes: BTreeSet<String> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                v.config_map
                    .as_ref()
                    .map(|c| c.name.clone())
                    .or_else(|| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
            })
            .collect();
        assert!(
            volumes.contains("activity-audit-config") && volumes.contains("activity-audit-secrets")
        );
        container_ports.insert(name, ports);
    }
    // Services point at pods and ports that exist; every one exposes ops for monitoring.
    let mut service_ports = BTreeMap::new();
    for s in &services {
        let name = s.metadata.name.clone().unwrap();
        let pods = container_ports
            .get(&name)
            .unwrap_or_else(|| panic!("service {name} has no deployment"));
        let spec = s.spec.as_ref().unwrap();
        let mut names = BTreeSet::new();
        for p in spec.ports.iter().flatten() {
            let target = match p.target_port.as_ref().unwrap() {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                other => panic!("{name}: target port {other:?} by number"),
            };
            assert!(
                pods.contains_key(&target),
                "{name}: no container port {target}"
            );
            names.insert(p.name.clone().unwrap());
        }
        assert!(
            names.contains("ops"),
            "{name}: ops port for the ServiceMonitor"
        );
        service_ports.insert(name, names);
    }
    for i in &ingresses {
        for rule in i.spec.as_ref().unwrap().rules.iter().flatten() {
            for path in &rule.http.as_ref().unwrap().paths {
                let svc = path.backend.service.as_ref().unwrap();
                let port = svc.port.as_ref().unwrap().name.clone().unwrap();
                assert!(
                    service_ports
                        .get(&svc.name)
                        .is_some_and(|p| p.contains(&port)),
                    "ingress backend {}:{port}",
                    svc.name
                );
            }
        }
        assert!(i.spec.as_ref().unwrap().tls.is_some(), "TLS in front");
    }
    for h in &hpas {
        let target = &h.spec.as_ref().unwrap().scale_target_ref;
        assert_eq!(target.kind, "Deployment");
        assert!(container_ports.contains_key(&target.name));
    }
    // The setup job runs the writer's --setup with the writer's config, whose topic settings
    // are production ones.
    assert_eq!(jobs.len(), 1);
    let c = &jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        c.command.as_deref().unwrap(),
        ["/usr/local/bin/activity-audit-writer", "--setup"]
    );
    let writer: store::writer::WriterConfig = toml::from_str(&config["writer.toml"]).unwrap();
    assert!(writer.topic_setup.replication >= 3 && writer.topic_setup.min_insync_replicas >= 2);
    let most = hpas
        .iter()
        .map(|h| h.spec.as_ref().unwrap().max_replicas)
        .max()
        .unwrap();
    assert!(
        writer.topic_setup.partitions >= most,
        "a replica beyond the partitions would idle"
    );
    assert_eq!(monitors.len(), 1);
    let m = &monitors[0];
    assert_eq!(m["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "activity-audit"
    );
    assert_eq!(m["spec"]["endpoints"][0]["port"], "ops");
    assert_eq!(m["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_enricher_role_allows_every_watch() {
    let role: ClusterRole = documents("enricher-rbac.yaml")
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .map(|d| typed("enricher-rbac.yaml", d))
        .expect("a ClusterRole");
    let rules = role.rules.unwrap_or_default();
    for kind in enricher::meta::Kind::ALL {
        let (_, group, resource) = kind.api();
        let allowed = |verb: &str| {
            rules.iter().any(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == resource)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        assert!(
            allowed("list") && allowed("watch"),
            "the enricher watches {group:?}/{resource} but its role does not allow it"
        );
    }
}
