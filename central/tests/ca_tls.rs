//! Mutual TLS over loopback with certificates from the CA: an Ed25519
//! client certificate issued by the CA is accepted and identified, one from
//! another CA is refused, and a client that pins another root refuses the
//! server.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use central::ca::{CertificateAuthority, Validity};
use chrono::Utc;
use provider_sdk::pki::{
    client_config, peer_certified_key, server_config, CertifiedKey, ClientAuth, ParticipantKey,
    Role, RootCertificate, TlsIdentity,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Server {
    addr: std::net::SocketAddr,
    /// What the server learnt about its one client (or why the handshake failed).
    outcome: tokio::task::JoinHandle<Result<Option<CertifiedKey>, String>>,
}

/// Serves one TLS connection: handshake, identify the peer, echo one line.
async fn serve_once(ca: &CertificateAuthority, client_auth: ClientAuth) -> Server {
    let issued = ca
        .issue_server_cert(
            &["localhost".to_string()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::days(1),
        )
        .unwrap();
    let key_pem = issued.key.to_pkcs8_pem().unwrap();
    let identity = TlsIdentity::from_pem(&issued.cert.cert_pem, &key_pem).unwrap();
    let config = server_config(&ca.root_cert_pem(), &identity, client_auth).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let root = RootCertificate::from_pem(&ca.root_cert_pem()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let outcome = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer =
            peer_certified_key(tls.get_ref().1, &root, Utc::now()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(peer)
    });
    Server { addr, outcome }
}

/// Connects, sends "hello", expects it back.
async fn talk(
    addr: std::net::SocketAddr,
    root_pem: &str,
    identity: Option<&TlsIdentity>,
) -> Result<(), String> {
    let config = client_config(root_pem, identity).map_err(|e| e.to_string())?;
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    if &buf != b"hello" {
        return Err(format!("echo mismatch: {buf:?}"));
    }
    Ok(())
}

fn provider_identity(ca: &CertificateAuthority, id: u64) -> (TlsIdentity, ParticipantKey) {
    let key = ParticipantKey::generate();
    let issued = ca
        .certify_csr(
            &key.csr_pem("Example Telecom").unwrap(),
            Role::Provider(id),
            Validity::days(1),
        )
        .unwrap();
    let identity = TlsIdentity::from_pem(&issued.cert_pem, &key.to_pkcs8_pem().unwrap()).unwrap();
    (identity, key)
}

#[tokio::test]
async fn client_certificate_from_the_ca_is_accepted_and_identified() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let (identity, key) = provider_identity(&ca, 42);
    let server = serve_once(&ca, ClientAuth::Optional).await;
    talk(server.addr, &ca.root_cert_pem(), Some(&identity))
        .await
        .unwrap();
    let peer = server
        .outcome
        .await
        .unwrap()
        .unwrap()
        .expect("peer certificate");
    assert_eq!(peer.role, Role::Provider(42));
    assert_eq!(peer.key_id, key.key_id());
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_clients_in() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let server = serve_once(&ca, ClientAuth::Optional).await;
    talk(server.addr, &ca.root_cert_pem(), None).await.unwrap();
    assert_eq!(server.outcome.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn required_client_auth_refuses_anonymous_clients() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let server = serve_once(&ca, ClientAuth::Required).await;
    let client = talk(server.addr, &ca.root_cert_pem(), None).await;
    let server = server.outcome.await.unwrap();
    assert!(client.is_err(), "client got through");
    let err = server.unwrap_err();
    assert!(
        err.contains("NoCertificatesPresented") || err.contains("no certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let other = CertificateAuthority::create("Test Root").unwrap();
    let (identity, _) = provider_identity(&other, 42);
    let server = serve_once(&ca, ClientAuth::Optional).await;
    let client = talk(server.addr, &ca.root_cert_pem(), Some(&identity)).await;
    let server = server.outcome.await.unwrap();
    assert!(client.is_err(), "client got through");
    let err = server.unwrap_err();
    assert!(
        err.contains("BadSignature")
            || err.contains("UnknownIssuer")
            || err.contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn server_certificate_is_not_a_client_credential() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let server_cert = ca
        .issue_server_cert(&["localhost".to_string()], &[], Validity::days(1))
        .unwrap();
    let identity = TlsIdentity::from_pem(
        &server_cert.cert.cert_pem,
        &server_cert.key.to_pkcs8_pem().unwrap(),
    )
    .unwrap();
    let server = serve_once(&ca, ClientAuth::Optional).await;
    let client = talk(server.addr, &ca.root_cert_pem(), Some(&identity)).await;
    let err = server.outcome.await.unwrap().unwrap_err();
    assert!(client.is_err());
    assert!(
        err.to_lowercase().contains("purpose") || err.contains("Eku") || err.contains("usage"),
        "{err}"
    );
}

#[tokio::test]
async fn client_pinning_another_root_refuses_the_server() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let other = CertificateAuthority::create("Other Root").unwrap();
    let server = serve_once(&ca, ClientAuth::Optional).await;
    let err = talk(server.addr, &other.root_cert_pem(), None)
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );
    assert!(server.outcome.await.unwrap().is_err());
}

#[test]
fn identity_from_mismatched_pem_is_an_error() {
    let ca = CertificateAuthority::create("Test Root").unwrap();
    let (_, _) = provider_identity(&ca, 1);
    let key = ParticipantKey::generate();
    let issued = ca
        .certify_csr(
            &key.csr_pem("A").unwrap(),
            Role::Provider(1),
            Validity::days(1),
        )
        .unwrap();
    let other_key = ParticipantKey::generate().to_pkcs8_pem().unwrap();
    // rustls refuses a certificate whose key is not the given private key.
    let identity = TlsIdentity::from_pem(&issued.cert_pem, &other_key).unwrap();
    assert!(client_config(&ca.root_cert_pem(), Some(&identity)).is_err());
    assert!(TlsIdentity::from_pem("", &other_key).is_err());
    assert!(TlsIdentity::from_pem(&issued.cert_pem, "junk").is_err());
    assert!(client_config("junk", None).is_err());
}
