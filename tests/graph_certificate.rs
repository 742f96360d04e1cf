//! Certificate sign-in (client assertion signed with aws-lc-rs) against the
//! simulator, which verifies it with the key registered for the app.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use presence_sync::config::{GraphAuth, GraphConfig, Origin, SecretLocation, SecretSource};
use presence_sync::graph::{AuthError, CertificateCredential, Credential, GraphClient, GraphError};
use presence_sync::sim::{self, SimHandle, SimOptions};

const CERT_DER: &[u8] = b"a test certificate's DER: the simulator keeps only its SHA-256";

fn config(sim: &SimHandle) -> GraphConfig {
    GraphConfig {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        // The credential is handed to the client directly below.
        auth: GraphAuth::ClientSecret(SecretSource {
            purpose: "the Graph client secret",
            location: SecretLocation::File("/nonexistent".into()),
            origin: Origin::whole_file(Path::new("test.toml")),
        }),
        login_base: sim.base_url.clone(),
        graph_base: sim.base_url.clone(),
        requests_per_30s: 1_500,
        request_timeout: Duration::from_secs(10),
        session_expiry: Duration::from_secs(3600),
        outbound: Default::default(),
    }
}

async fn simulator(registered: Option<&RsaKeyPair>) -> SimHandle {
    sim::spawn(SimOptions {
        users: 3,
        certificate: registered.map(|key| (CERT_DER.to_vec(), key.public_key().as_ref().to_vec())),
        ..SimOptions::default()
    })
    .await
    .expect("the simulator starts on a free loopback port")
}

#[tokio::test]
async fn a_registered_certificate_signs_in_and_reads_the_directory() {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let sim = simulator(Some(&key)).await;
    let signer = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    // The simulator must refuse a key it does not know...
    let stranger = GraphClient::new(
        &config(&sim),
        Credential::Certificate(CertificateCredential::new(signer, CERT_DER)),
    )
    .unwrap();
    let refused = stranger.list_users().await.unwrap_err();
    assert!(
        matches!(refused, GraphError::Auth(AuthError::InvalidCertificate(_))),
        "{refused:?}"
    );
    // ...and accept the registered one.
    let client = GraphClient::new(
        &config(&sim),
        Credential::Certificate(CertificateCredential::new(key, CERT_DER)),
    )
    .unwrap();
    let users = client.list_users().await.unwrap();
    assert_eq!(users.len(), 3);
    sim.shutdown().await.unwrap();
}
