use crate::Filter;
use serde_json::{json, Value};

fn item() -> Value {
    json!({
        "Node": {"Node": "web-1", "Address": "10.0.0.1", "Meta": {"rack": "r1", "a.b": "dotted"}},
        "Service": {
            "ID": "web-1a", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
            "Meta": {"version": "2"}, "Kind": "", "EnableTagOverride": false,
        },
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing"},
            {"CheckID": "service:web-1a", "Status": "critical"},
        ],
    })
}

fn eval(expr: &str) -> bool {
    Filter::parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .matches(&item())
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn parse_err(expr: &str) -> (usize, String) {
    let e = Filter::parse(expr).expect_err(expr);
    (e.position, e.to_string())
}

#[test]
fn equality_on_strings_numbers_and_booleans() {
    assert!(eval(r#"Service.Service == "web""#));
    assert!(eval("Service.Service == web"));
    assert!(eval("Service.Service == `web`"));
    assert!(!eval(r#"Service.Service == "db""#));
    assert!(eval(r#"Service.Service != "db""#));
    assert!(eval("Service.Port == 8080"));
    assert!(eval(r#"Service.Port == "8080""#));
    assert!(!eval("Service.Port != 8080"));
    assert!(eval("Service.EnableTagOverride == false"));
    assert!(eval("Service.Service==web"));
}

#[test]
fn in_and_contains_on_lists_maps_and_strings() {
    assert!(eval(r#""v1" in Service.Tags"#));
    assert!(eval("v1 in Service.Tags"));
    assert!(eval(r#"Service.Tags contains "primary""#));
    assert!(!eval(r#"Service.Tags contains "v2""#));
    assert!(eval(r#"Service.Tags not contains "v2""#));
    assert!(eval(r#""v2" not in Service.Tags"#));
    assert!(eval(r#""version" in Service.Meta"#));
    assert!(eval(r#"Node.Node contains "eb-""#));
}

#[test]
fn emptiness_and_absent_fields() {
    assert!(eval("Service.Kind is empty"));
    assert!(eval("Service.Tags is not empty"));
    assert!(eval("Service.Proxy is empty"), "absent counts as empty");
    assert!(!eval("Service.Proxy is not empty"));
    assert!(!eval(r#"Service.Meta.missing == "x""#));
    assert!(eval(r#"Service.Meta.missing != "x""#));
    assert!(!eval(r#"Service.Meta.missing matches "x""#));
}

#[test]
fn maps_by_dot_and_by_index() {
    assert!(eval(r#"Service.Meta.version == "2""#));
    assert!(eval("Service.Meta.version == 2"));
    assert!(eval(r#"Node.Meta["a.b"] == dotted"#));
    assert!(eval(r#"Node.Meta[ `rack` ] == "r1""#));
    assert!(eval(r#""/Service/Meta/version" == "2""#));
    assert!(eval(r#"Service.Tags.0 == "v1""#));
}

#[test]
fn lists_of_objects_match_when_any_element_does() {
    assert!(eval("Checks.Status == critical"));
    assert!(eval("Checks.Status == passing"));
    assert!(!eval("Checks.Status == warning"));
    assert!(eval(r#"Checks.CheckID matches "^service:""#));
}

#[test]
fn regular_expressions() {
    assert!(eval(r#"Node.Node matches "^web-[0-9]+$""#));
    assert!(!eval(r#"Node.Node matches "^db""#));
    assert!(eval(r#"Node.Node not matches "^db""#));
}

#[test]
fn boolean_logic_and_precedence() {
    assert!(eval(r#"Service.Service == web and Service.Port == 8080"#));
    assert!(!eval(r#"Service.Service == db and Service.Port == 8080"#));
    assert!(eval(r#"Service.Service == db or Service.Port == 8080"#));
    assert!(eval(r#"not Service.Service == db"#));
    assert!(!eval(r#"not not Service.Service == db"#));
    // and binds tighter than or: (false and true) or true
    assert!(!eval(
        r#"Service.Service == db and Service.Port == 8080 or Node.Node == web"#
    ));
    assert!(eval(
        r#"Service.Service == db and Service.Port == 1 or Service.Port == 8080"#
    ));
    assert!(!eval(
        r#"Service.Service == db and (Service.Port == 1 or Service.Port == 8080)"#
    ));
    assert!(eval(r#"( Service.Service == web )"#));
    assert!(eval(" \n Service.Service == web\t"));
    assert!(eval(
        r#"not (Service.Service == db or "v9" in Service.Tags)"#
    ));
}

#[test]
fn escapes_in_double_quotes_and_raw_backticks() {
    let item = json!({"Output": "a\tb", "Raw": "a\\tb"});
    let m = |e: &str| Filter::parse(e).unwrap().matches(&item).unwrap();
    assert!(m(r#"Output == "a\tb""#));
    assert!(m(r#"Raw == `a\tb`"#));
    assert!(m(r#"Raw == "a\\tb""#));
}

#[test]
fn errors_name_the_position() {
    let (pos, msg) = parse_err(r#"Service.Tags contians "x""#);
    assert_eq!(pos, 14, "{msg}");
    assert!(msg.contains("expected an operator"), "{msg}");
    let (pos, msg) = parse_err(r#"Service.Service == "web"#);
    assert_eq!(pos, 24, "{msg}");
    assert!(msg.contains("closing \""), "{msg}");
    let (pos, msg) = parse_err("Service.Service == web and ");
    assert_eq!(pos, 28, "{msg}");
    assert!(msg.contains("a matching expression"), "{msg}");
    let (pos, msg) = parse_err("(Service.Service == web");
    assert_eq!(pos, 24, "{msg}");
    assert!(msg.contains("`)`"), "{msg}");
    let (pos, msg) = parse_err(r#"Node.Node matches "[""#);
    assert_eq!(pos, 19, "{msg}");
    assert!(msg.contains("regular expression"), "{msg}");
    let (pos, msg) = parse_err(r#""x" == Service.Service"#);
    assert_eq!(pos, 1, "{msg}");
    assert!(msg.contains("selector"), "{msg}");
    let (pos, _) = parse_err("");
    assert_eq!(pos, 1);
    let (pos, msg) = parse_err("Service.Port == 80x");
    assert_eq!(pos, 17, "{msg}");
    let (pos, msg) = parse_err("Node.Node == web-1");
    assert_eq!(pos, 17, "{msg}");
    let (pos, msg) = parse_err("Service.Service == web garbage");
    assert_eq!(pos, 24, "{msg}");
    assert!(msg.contains("`and`, `or`"), "{msg}");
    let (pos, msg) = parse_err(r#"Node.Meta["rack" == x"#);
    assert!(msg.contains("`]`"), "{pos} {msg}");
    let (_, msg) = parse_err(r#"Service.Service == "a\qb""#);
    assert!(msg.contains("\\q"), "{msg}");
}

#[test]
fn type_errors_name_the_selector() {
    let f = Filter::parse(r#"Service.Port matches "80""#).unwrap();
    let e = f.matches(&item()).unwrap_err();
    assert_eq!(e.selector, "Service.Port");
    assert!(e.to_string().contains("needs a string"), "{e}");
    let f = Filter::parse("Service.Tags == v1").unwrap();
    assert!(f.matches(&item()).is_err());
    let f = Filter::parse("Service.Port == abc").unwrap();
    assert!(f
        .matches(&item())
        .unwrap_err()
        .to_string()
        .contains("not a number"));
    let f = Filter::parse("Service.Port is empty").unwrap();
    assert!(f.matches(&item()).is_err());
}

#[test]
fn retain_keeps_order() {
    let items = vec![json!({"N": 1}), json!({"N": 2}), json!({"N": 3})];
    let f = Filter::parse("N != 2").unwrap();
    let kept = f.retain(items, |v| v.clone()).unwrap();
    assert_eq!(kept, vec![json!({"N": 1}), json!({"N": 3})]);
    assert_eq!(f.source(), "N != 2");
}
