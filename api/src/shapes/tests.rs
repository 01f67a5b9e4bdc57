//! The JSON shapes against Consul's own output, field by field.

use super::*;
use crate::response::to_json;
use muster_engine::Status;

fn s(v: &impl Serialize) -> String {
    String::from_utf8_lossy(&to_json(v, false).unwrap_or_default()).into_owned()
}

#[test]
fn shapes_node_catalog_service_node_service() {
    let mut n = Node {
        id: "40e4a748-2192-161a-0510-9bf59fe950b5".into(),
        node: "n1".into(),
        address: "10.0.0.5".into(),
        datacenter: "dc1".into(),
        create_index: 13,
        modify_index: 13,
        ..Node::default()
    };
    assert_eq!(
        s(&NodeJson::from(&n)),
        r#"{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"n1","Address":"10.0.0.5","Datacenter":"dc1","TaggedAddresses":null,"Meta":{},"CreateIndex":13,"ModifyIndex":13}"#
    );
    n.tagged_addresses.insert("lan".into(), "10.0.0.5".into());
    assert!(s(&NodeJson::from(&n)).contains(r#""TaggedAddresses":{"lan":"10.0.0.5"}"#));
    let mut svc = Service {
        id: "web1".into(),
        service: "web".into(),
        create_index: 20,
        modify_index: 21,
        ..Service::default()
    };
    assert_eq!(
        s(&NodeServiceJson::from(&svc)),
        r#"{"ID":"web1","Service":"web","Tags":[],"Address":"","Meta":{},"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Proxy":{"Expose":{},"MeshGateway":{},"Mode":""},"Connect":{},"CreateIndex":20,"ModifyIndex":21}"#
    );
    svc.port = 80;
    svc.kind = "connect-proxy".into();
    svc.tagged_addresses.insert(
        "lan".into(),
        ServiceAddress {
            address: "10.0.0.9".into(),
            port: 81,
        },
    );
    let j = s(&NodeServiceJson::from(&svc));
    assert!(
        j.starts_with(r#"{"Kind":"connect-proxy","ID":"web1""#),
        "{j}"
    );
    assert!(j.contains(
        r#""TaggedAddresses":{"lan":{"Address":"10.0.0.9","Port":81}},"Meta":{},"Port":80,"#
    ));
    svc.kind.clear();
    svc.tagged_addresses.clear();
    assert_eq!(
        s(&CatalogServiceJson::new(&n, &svc)),
        r#"{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"n1","Address":"10.0.0.5","Datacenter":"dc1","TaggedAddresses":{"lan":"10.0.0.5"},"NodeMeta":{},"ServiceKind":"","ServiceID":"web1","ServiceName":"web","ServiceTags":[],"ServiceAddress":"","ServiceWeights":{"Passing":1,"Warning":1},"ServiceMeta":{},"ServicePort":80,"ServiceSocketPath":"","ServiceEnableTagOverride":false,"ServiceProxy":{"Expose":{},"MeshGateway":{},"Mode":""},"ServiceConnect":{},"ServiceLocality":null,"CreateIndex":20,"ModifyIndex":21}"#
    );
}

#[test]
fn shapes_agent_service() {
    let mut svc = Service {
        id: "web1".into(),
        service: "web".into(),
        ..Service::default()
    };
    assert_eq!(
        s(&AgentServiceJson::new(&svc, "dc1")),
        r#"{"ID":"web1","Service":"web","Tags":[],"Meta":{},"Port":0,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Datacenter":"dc1"}"#
    );
    let (j, h1) = AgentServiceJson::new(&svc, "dc1").with_content_hash();
    assert_eq!(h1.len(), 16);
    assert!(s(&j).contains(&format!(r#""ContentHash":"{h1}","Datacenter":"dc1""#)));
    svc.port = 80;
    svc.socket_path = "/s".into();
    let (j, h2) = AgentServiceJson::new(&svc, "dc1").with_content_hash();
    assert_ne!(h1, h2);
    assert!(s(&j).contains(r#""Port":80,"Address":"","SocketPath":"/s","Weights""#));
}

#[test]
fn shapes_health_check() {
    let mut c = Check {
        node: "n1".into(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: Status::Passing,
        create_index: 5,
        modify_index: 6,
        ..Check::default()
    };
    assert_eq!(
        s(&HealthCheckJson::from(&c)),
        r#"{"Node":"n1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","Notes":"","Output":"","ServiceID":"","ServiceName":"","ServiceTags":[],"Type":"","Interval":"","Timeout":"","ExposedPort":0,"Definition":{},"CreateIndex":5,"ModifyIndex":6}"#
    );
    c.interval_ns = 10_000_000_000;
    c.timeout_ns = 90_000_000_000;
    c.definition = r#"{"HTTP":"http://x"}"#.into();
    let j = s(&HealthCheckJson::from(&c));
    assert!(
        j.contains(
            r#""Interval":"10s","Timeout":"1m30s","ExposedPort":0,"Definition":{"HTTP":"http://x"}"#
        ),
        "{j}"
    );
}

#[test]
fn shapes_session() {
    let mut sess = Session {
        id: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
        name: "batman-pg0".into(),
        node: "n1".into(),
        lock_delay_ns: 15_000_000_000,
        ttl: "30s".into(),
        node_checks: Some(vec!["serfHealth".into()]),
        create_index: 9,
        modify_index: 9,
        ..Session::default()
    };
    assert_eq!(
        s(&SessionJson::from(&sess)),
        r#"{"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","Name":"batman-pg0","Node":"n1","LockDelay":15000000000,"Behavior":"release","TTL":"30s","NodeChecks":["serfHealth"],"ServiceChecks":null,"CreateIndex":9,"ModifyIndex":9}"#
    );
    sess.behavior = muster_engine::SessionBehavior::Delete;
    sess.node_checks = None;
    sess.service_checks = Some(vec![muster_engine::ServiceCheckRef {
        id: "service:web1".into(),
        namespace: String::new(),
    }]);
    let j = s(&SessionJson::from(&sess));
    assert!(
        j.contains(r#""Behavior":"delete","TTL":"30s","NodeChecks":null,"ServiceChecks":[{"ID":"service:web1","Namespace":""}]"#),
        "{j}"
    );
}
