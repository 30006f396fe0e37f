//! The deployment recipe (`docs/deploy.md`, manifests in `docs/deploy/`): the manifests parse,
//! the doc quotes them as they are, and the names and ports they share agree with one another,
//! with the discovery URL and with the program they run (`examples/kubernetes.rs`).

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use distributed_scope::{Discovery, Peer, PeerId};
use serde_norway::Value;
use support::block_on;

fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The one document of a manifest file.
fn manifest(relative: &str) -> Value {
    let text = read(relative);
    let mut documents = serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|error| panic!("{relative} does not parse: {error}"))
        })
        .collect::<Vec<_>>();
    assert_eq!(documents.len(), 1, "{relative} holds one manifest");
    documents.remove(0)
}

/// `value` at a path of keys and indexes, failing the test with the path if it is missing.
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |value, key| {
        let next = match key.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(*key),
        };
        next.unwrap_or_else(|| panic!("no {} in the manifest", path.join(".")))
    })
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

/// The items of a list whose `name` is `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence()
        .expect("a list")
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no item named {name}"))
}

#[test]
fn the_doc_quotes_every_manifest_as_it_is() {
    let doc = read("docs/deploy.md");
    for file in ["service.yaml", "statefulset.yaml", "certificate.yaml"] {
        let manifest = read(&format!("docs/deploy/{file}"));
        assert!(
            doc.contains(&format!("```yaml\n{manifest}```")),
            "docs/deploy.md does not quote docs/deploy/{file} as it is"
        );
    }
}

#[test]
fn the_service_is_headless_and_publishes_pods_before_they_are_ready() {
    let service = manifest("docs/deploy/service.yaml");
    assert_eq!(text(&service, &["kind"]), "Service");
    assert_eq!(text(&service, &["spec", "clusterIP"]), "None");
    assert_eq!(
        at(&service, &["spec", "publishNotReadyAddresses"]).as_bool(),
        Some(true)
    );
    let port = named(at(&service, &["spec", "ports"]), "peer");
    assert_eq!(text(port, &["protocol"]), "TCP");
    assert_eq!(text(port, &["targetPort"]), "peer");
}

#[test]
fn the_statefulset_agrees_with_the_service_the_secrets_and_the_program() {
    let service = manifest("docs/deploy/service.yaml");
    let set = manifest("docs/deploy/statefulset.yaml");
    let certificate = manifest("docs/deploy/certificate.yaml");
    let service_name = text(&service, &["metadata", "name"]);
    let service_port = named(at(&service, &["spec", "ports"]), "peer");
    let port = at(service_port, &["port"]).as_u64().expect("a port number");

    assert_eq!(text(&set, &["kind"]), "StatefulSet");
    assert_eq!(text(&set, &["spec", "serviceName"]), service_name);
    let labels = at(&set, &["spec", "template", "metadata", "labels"]);
    assert_eq!(
        at(&service, &["spec", "selector"]),
        labels,
        "the service selects the pods"
    );
    let container = at(&set, &["spec", "template", "spec", "containers", "0"]);
    let container_port = named(at(container, &["ports"]), "peer");
    assert_eq!(at(container_port, &["containerPort"]).as_u64(), Some(port));
    let env = at(container, &["env"]);
    let value = |name: &str| text(named(env, name), &["value"]).to_owned();

    // The peer listens on the port the Service names.
    assert_eq!(value("PEER_LISTEN"), format!("0.0.0.0:{port}"));

    // Discovery asks for the SRV records of that port of that Service, over TLS.
    let discover = value("PEER_DISCOVER");
    assert_eq!(
        discover,
        format!("dns+srv+wss://_peer._tcp.{service_name}.$(POD_NAMESPACE).svc.cluster.local")
    );
    let namespace = named(env, "POD_NAMESPACE");
    assert_eq!(
        text(namespace, &["valueFrom", "fieldRef", "fieldPath"]),
        "metadata.namespace"
    );
    let pod = named(env, "POD_NAME");
    assert_eq!(
        text(pod, &["valueFrom", "fieldRef", "fieldPath"]),
        "metadata.name"
    );

    // The token key comes from a Secret, not from the manifest.
    let secret = at(
        named(env, "PEER_JWT_SECRET"),
        &["valueFrom", "secretKeyRef"],
    );
    assert_eq!(text(secret, &["name"]), "peers-auth");
    assert_eq!(text(secret, &["key"]), "jwt-secret");
    assert!(
        named(env, "PEER_JWT_SECRET").get("value").is_none(),
        "no token key in the manifest"
    );

    // The TLS Secret is mounted where the program reads it, and the certificate names
    // every pod the SRV records lead to.
    let volumes = at(&set, &["spec", "template", "spec", "volumes"]);
    let tls = named(volumes, "tls");
    assert_eq!(text(tls, &["secret", "secretName"]), "peers-tls");
    let mount = named(at(container, &["volumeMounts"]), "tls");
    assert_eq!(text(mount, &["mountPath"]), value("PEER_TLS_DIR"));
    assert_eq!(text(&certificate, &["spec", "secretName"]), "peers-tls");
    assert_eq!(
        text(&certificate, &["spec", "dnsNames", "0"]),
        format!("*.{service_name}.default.svc.cluster.local")
    );

    // The program reads every variable the manifest sets.
    let program = read("examples/kubernetes.rs");
    for item in env.as_sequence().expect("a list") {
        let name = text(item, &["name"]);
        if name != "POD_NAMESPACE" {
            assert!(
                program.contains(&format!("\"{name}\"")),
                "examples/kubernetes.rs does not read {name}"
            );
        }
    }
}

#[test]
fn the_discovery_url_of_the_manifest_is_accepted() {
    let set = manifest("docs/deploy/statefulset.yaml");
    let env = at(
        &set,
        &["spec", "template", "spec", "containers", "0", "env"],
    );
    let discover =
        text(named(env, "PEER_DISCOVER"), &["value"]).replace("$(POD_NAMESPACE)", "default");
    // A nameserver on loopback that never answers: starting the peer checks the URL, and
    // no lookup leaves this machine.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("binds");
    let nameserver = silent.local_addr().expect("bound");
    block_on(async move {
        let peer = Peer::builder(PeerId::from_name("peers-0"))
            .discover(Discovery::dns(discover).nameserver(nameserver))
            .start()
            .await
            .expect("the manifest's discovery url is accepted");
        peer.stop().await.expect("stops");
    });
}
