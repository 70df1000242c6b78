//! The `demo.sip_delay_ms` knob: a UDP relay in front of the gateway's SIP
//! listener that holds every datagram for a while each way, so that the
//! provider looks farther away to OPTIONS probes and calls. Each payer
//! address gets its own upstream socket, so answers find their way back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Binds `front` and relays to `target` with `delay` each way until `stop`.
pub(crate) async fn start(
    front: SocketAddr,
    target: SocketAddr,
    delay: Duration,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let socket = Arc::new(UdpSocket::bind(front).await?);
    let addr = socket.local_addr()?;
    let upstream_ip = SocketAddr::new(target.ip(), 0);
    tokio::spawn(async move {
        let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, client) = tokio::select! {
                _ = stop.cancelled() => return,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(v) => v,
                    // ICMP errors of earlier sends surface here: keep going.
                    Err(_) => continue,
                },
            };
            let packet = buf[..n].to_vec();
            let up = match upstream.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let Ok(u) = UdpSocket::bind(upstream_ip).await else {
                        continue;
                    };
                    let u = Arc::new(u);
                    let (back, front, stop) = (u.clone(), socket.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        loop {
                            let n = tokio::select! {
                                _ = stop.cancelled() => return,
                                r = back.recv_from(&mut buf) => match r {
                                    Ok((n, _)) => n,
                                    Err(_) => continue,
                                },
                            };
                            let packet = buf[..n].to_vec();
                            let front = front.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = front.send_to(&packet, client).await;
                            });
                        }
                    });
                    upstream.insert(client, u.clone());
                    u
                }
            };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = up.send_to(&packet, target).await;
            });
        }
    });
    Ok(addr)
}
