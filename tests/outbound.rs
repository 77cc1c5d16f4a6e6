//! The outbound guard with a proxy set in the environment. A proxy resolves names
//! itself, so a request sent through it would skip the guard's check of where a name
//! leads: the research client must never use one. Its own test binary, because the
//! environment is the whole process's.
#![cfg(feature = "ssr")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobdeck::server::steps::net::Http;

#[tokio::test]
async fn a_proxy_from_the_environment_is_never_used() {
    // A "proxy" on loopback that counts what reaches it and answers 200 to everything.
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let proxy = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "proxied" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, proxy).await.unwrap() });
    let url = format!("http://{addr}");
    for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        // The whole process sees these: this binary holds only this one test.
        std::env::set_var(name, &url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    // A control: a plain client does go through the proxy, so the setup is real.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let via = plain.get("http://jobdeck-proxy-check.example/").send().await.unwrap().text().await.unwrap();
    assert_eq!(via, "proxied");
    let seen = hits.load(Ordering::SeqCst);

    // The research client, strict as in production: the name is resolved here and
    // refused (it has no public address), and the proxy never hears of it.
    let http = Http::build(Duration::from_secs(5), "jobdeck-test", false, 1 << 20).unwrap();
    for target in ["http://localhost/", "http://jobdeck-proxy-check.example/"] {
        let result = http.client.get(target).send().await;
        assert!(result.is_err(), "{target} was reached: {result:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), seen, "a request went through the proxy");
}
