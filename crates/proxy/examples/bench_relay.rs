//! The least a proxy can do, for bench/README.md's latency floor: a plain TCP relay on one
//! thread (tokio's current-thread runtime, as strait's proxies), no TLS, no parsing, each
//! connection copied both ways with `copy_bidirectional`. Two of them in a row show what two
//! user-space hops cost on this machine, whatever the proxy.
//! Usage: `bench_relay <listen addr> <upstream addr>`.

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bench_relay <listen addr> <upstream addr>");
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("bench_relay {listen} -> {upstream}");
    loop {
        let (mut down, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
    }
}
