//! X.509 device authentication over MQTT: self-signed certificates matched by thumbprint, and
//! CA-signed certificates chained to a CA registered on the hub with the device id as the
//! leaf's common name.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod mqtt_support;

use mqtt_support::{Client, start};
use outpost_auth::Thumbprint;
use outpost_core::{Caller, DeviceSpec, ModuleSpec};
use outpost_model::{Authentication, AuthenticationType, DeviceId, ModuleId, X509Thumbprints};
use outpost_mqtt::codec::ConnectReturnCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn test_ca(name: &str) -> TestCa {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

fn leaf(common_name: &str, ca: Option<&TestCa>) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (vec![cert.der().clone()], key)
}

fn authentication(kind: AuthenticationType, thumbprint: Option<Thumbprint>) -> Option<Authentication> {
    Some(Authentication {
        kind,
        x509_thumbprint: X509Thumbprints {
            primary_thumbprint: thumbprint,
            secondary_thumbprint: None,
        },
        ..Default::default()
    })
}

#[tokio::test]
async fn self_signed_devices_connect_by_thumbprint() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let caller = Caller::operator(server.outpost.hubs.by_host("localhost").unwrap());
    let (chain, key) = leaf("cam", None);
    let spec = DeviceSpec {
        authentication: authentication(
            AuthenticationType::SelfSigned,
            Some(Thumbprint::sha256_of_der(&chain[0])),
        ),
        ..Default::default()
    };
    server
        .outpost
        .registry
        .put_device(&caller, &DeviceId::new("cam").unwrap(), spec, None)
        .await
        .unwrap();
    let mut client = Client::open_with_certificate(&server, chain, key).await;
    assert_eq!(
        client.connect_x509("cam").await.return_code,
        ConnectReturnCode::Accepted
    );

    let (other_chain, other_key) = leaf("cam", None);
    let mut client = Client::open_with_certificate(&server, other_chain, other_key).await;
    assert_eq!(
        client.connect_x509("cam").await.return_code,
        ConnectReturnCode::NotAuthorized
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ca_signed_devices_and_modules_connect_when_their_ca_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let hubs = &server.outpost.hubs;
    let ca = test_ca("Plant CA");
    let stranger = test_ca("Other CA");
    let device = DeviceId::new("sensor-7").unwrap();
    let caller = Caller::operator(hubs.by_host("localhost").unwrap());
    let spec = DeviceSpec {
        authentication: authentication(AuthenticationType::CertificateAuthority, None),
        ..Default::default()
    };
    server
        .outpost
        .registry
        .put_device(&caller, &device, spec, None)
        .await
        .unwrap();

    // Before the CA is registered, a chain to it is refused.
    let (chain, key) = leaf("sensor-7", Some(&ca));
    let mut client = Client::open_with_certificate(&server, chain.clone(), key.clone_key()).await;
    assert_eq!(
        client.connect_x509("sensor-7").await.return_code,
        ConnectReturnCode::NotAuthorized
    );

    assert!(
        hubs.put_certificate("localhost", "plant", "not a pem")
            .await
            .is_err()
    );
    hubs.put_certificate("localhost", "plant", &ca.pem).await.unwrap();
    let mut client = Client::open_with_certificate(&server, chain, key).await;
    assert_eq!(
        client.connect_x509("sensor-7").await.return_code,
        ConnectReturnCode::Accepted
    );

    for (common_name, issuer) in [
        ("sensor-8", Some(&ca)),
        ("sensor-7", Some(&stranger)),
        ("sensor-7", None),
    ] {
        let (chain, key) = leaf(common_name, issuer);
        let mut client = Client::open_with_certificate(&server, chain, key).await;
        assert_eq!(
            client.connect_x509("sensor-7").await.return_code,
            ConnectReturnCode::NotAuthorized,
            "{common_name}"
        );
    }

    let module = ModuleId::new("edge").unwrap();
    let module_spec = ModuleSpec {
        authentication: authentication(AuthenticationType::CertificateAuthority, None),
        ..Default::default()
    };
    server
        .outpost
        .registry
        .put_module(
            &Caller::operator(hubs.by_host("localhost").unwrap()),
            &device,
            &module,
            module_spec,
            None,
        )
        .await
        .unwrap();
    let (chain, key) = leaf("sensor-7/edge", Some(&ca));
    let mut client = Client::open_with_certificate(&server, chain, key).await;
    assert_eq!(
        client.connect_x509("sensor-7/edge").await.return_code,
        ConnectReturnCode::Accepted
    );

    hubs.delete_certificate("localhost", "plant").await.unwrap();
    let (chain, key) = leaf("sensor-7", Some(&ca));
    let mut client = Client::open_with_certificate(&server, chain, key).await;
    assert_eq!(
        client.connect_x509("sensor-7").await.return_code,
        ConnectReturnCode::NotAuthorized
    );
    server.shutdown().await;
}
