//! Serves the registry alone, in memory, for trying real clients against it:
//! `cargo run -p sluice-registry --example serve -- 127.0.0.1:8081`.

use std::sync::Arc;

use sluice_registry::{router, MemoryJournal, Registry};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_string());
    let registry = Arc::new(Registry::new(Arc::new(MemoryJournal::new())));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("schema registry on http://{addr}");
    axum::serve(listener, router(registry)).await
}
