use super::*;

/// A cluster CA generated into a scratch directory, as PEM strings.
fn dev_ca(name: &str) -> (String, String) {
    let dir = std::env::temp_dir().join(format!("palaver-mesh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    assert!(ensure_dev_ca(&cert, &key).unwrap(), "generated");
    assert!(!ensure_dev_ca(&cert, &key).unwrap(), "kept on the next start");
    let pems = (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
    pems
}

async fn connects(server: MeshTls, client: MeshTls) -> bool {
    let listener = quinn::Endpoint::server(server.server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let incoming = listener.accept().await?;
        incoming.await.ok()
    });
    let mut dialer = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    dialer.set_default_client_config(client.client);
    match dialer.connect(addr, SERVER_NAME).unwrap().await {
        Ok(connection) => {
            // The server may still refuse the client's certificate after the client's handshake.
            connection.open_bi().await.is_ok() && accepting.await.unwrap().is_some()
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn nodes_of_one_cluster_ca_connect_and_a_node_of_another_is_refused() {
    let (ca_cert, ca_key) = dev_ca("a");
    let (other_cert, other_key) = dev_ca("b");
    let node = |id: &str| MeshTls::issue(&ca_cert, &ca_key, id).unwrap();
    assert!(connects(node("node-0"), node("node-1")).await, "same CA, both ways verified");
    let stranger = MeshTls::issue(&other_cert, &other_key, "node-x").unwrap();
    assert!(!connects(node("node-0"), stranger).await, "a client certificate from another CA is refused");
    let stranger = MeshTls::issue(&other_cert, &other_key, "node-x").unwrap();
    assert!(!connects(stranger, node("node-1")).await, "a server certificate from another CA is refused");
}
