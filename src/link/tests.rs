//! The protocol tested through two engines joined in memory: no sockets, no runtime.

use super::*;

fn hello(peer: &str, app_version: Option<&str>, max: u64) -> Vec<u8> {
    Hello {
        peer: PeerId::from_name(peer),
        max_message_size: max,
        app_version: app_version.map(str::to_owned),
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn hello_checks_identity_versions_and_limits() {
    let version = Some("2".to_owned());
    let strict = Expect {
        local: PeerId::from_name("me"),
        app_version: &version,
        refuse_app_version_mismatch: true,
    };
    let (hello_ok, max) = check_hello(&hello("you", Some("2"), 1 << 40), &strict).unwrap();
    assert_eq!(hello_ok.peer, PeerId::from_name("you"));
    assert_eq!(max, wire::MAX_MESSAGE_SIZE_CEILING);
    assert_eq!(
        check_hello(&hello("me", Some("2"), 1024), &strict).unwrap_err(),
        HandshakeError::SelfConnection
    );
    assert!(matches!(
        check_hello(&hello("you", Some("1"), 1024), &strict),
        Err(HandshakeError::AppVersion { .. })
    ));
    assert_eq!(
        check_hello(b"GET /", &strict).unwrap_err(),
        HandshakeError::BadMagic
    );
    let lenient = Expect {
        refuse_app_version_mismatch: false,
        ..strict
    };
    assert!(check_hello(&hello("you", Some("1"), 1024), &lenient).is_ok());
}
