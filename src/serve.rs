//! `patgate serve` and `patgate check`: builds and runs the Pingora server for a [`Conf`]
//! (Pingora's settings come from our conf, no second YAML), or validates a conf and reaches
//! Redis.

use crate::admin::AdminApp;
use crate::auth::Authenticator;
use crate::cli::ServeArgs;
use crate::conf::Conf;
use crate::linger::Lingering;
use crate::proxy::Gateway;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service as ListeningService;
use std::sync::Arc;

/// Pingora's `ServerConf` derived from our `server:` settings.
pub fn pingora_server_conf(conf: &Conf) -> ServerConf {
    let settings = &conf.server;
    ServerConf {
        threads: settings.threads,
        pid_file: settings.pid_file.clone(),
        upgrade_sock: settings.upgrade_sock.clone(),
        error_log: settings.error_log.clone(),
        grace_period_seconds: Some(settings.grace_period_seconds),
        work_stealing: settings.work_stealing,
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_seconds),
        ..ServerConf::default()
    }
}

/// Runs the gateway until it is told to stop (SIGINT/SIGTERM, or SIGQUIT for an upgrade).
/// `opt` carries Pingora's own flags (daemon, upgrade, test). Returns after shutdown.
///
/// With `tls_listen`, the same proxy service also listens there over TLS (HTTP/1.1 and
/// HTTP/2 by ALPN), with the certificate and key checked when the conf loaded.
///
/// # Errors
/// Pingora refused the TLS listener's settings (before anything listens).
pub fn run(conf: Conf, opt: Opt) -> Result<(), pingora::BError> {
    let conf = Arc::new(conf);
    let mut server = Server::new_with_opt_and_conf(Some(opt), pingora_server_conf(&conf));
    server.bootstrap();
    let auth = Arc::new(Authenticator::new(Arc::clone(&conf)));
    // What `http_proxy_service_with_name` builds, with the shutdown linger around it.
    let mut proxy = pingora_proxy::HttpProxy::new(
        Gateway::new(Arc::clone(&conf), Arc::clone(&auth)),
        Arc::clone(&server.configuration),
    );
    proxy.handle_init_modules();
    let app = Lingering::new(proxy, conf.server.grace_period_seconds);
    let mut service = ListeningService::new("patgate".to_string(), app);
    service.add_tcp(&conf.listen.to_string());
    if let Some(tls) = &conf.tls {
        service.add_tls_with_settings(&tls.listen.to_string(), None, tls.settings()?);
    }
    server.add_service(service);
    if let Some(admin_listen) = conf.admin_listen {
        let app = HttpServer::new_app(AdminApp::new(Arc::clone(&conf), auth));
        let mut admin = ListeningService::new("patgate-admin".to_string(), app);
        admin.add_tcp(&admin_listen.to_string());
        server.add_service(admin);
    }
    let https = conf
        .tls
        .as_ref()
        .map(|tls| format!(" and {} (TLS)", tls.listen))
        .unwrap_or_default();
    log::info!(
        "patgate listening on {}{https} with {} routes, redis {}",
        conf.listen,
        conf.routes.len(),
        conf.redis.topology.describe()
    );
    server.run(RunArgs::default());
    Ok(())
}

/// `patgate serve`: Pingora's flags from the command line, everything else from the conf.
///
/// # Errors
/// Pingora refused the TLS listener's settings.
pub fn serve(conf: Conf, args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let ServeArgs {
        daemon,
        upgrade,
        test,
    } = args;
    let opt = Opt {
        upgrade,
        daemon,
        nocapture: false,
        test,
        conf: None,
    };
    run(conf, opt)?;
    Ok(())
}

/// Why `patgate check` failed after the conf itself loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Redis did not answer PING within its timeout.
    #[error("{path}: {key}: cannot reach {url}")]
    Redis {
        /// The conf file.
        path: String,
        /// The conf key naming the topology (`redis.url`, `redis.cluster`, `redis.sentinel`).
        key: &'static str,
        /// The URL or node list, passwords redacted.
        url: String,
        /// The cause.
        #[source]
        source: crate::store::StoreError,
    },
    /// The check's own runtime could not start.
    #[error("cannot start runtime")]
    Runtime(#[source] std::io::Error),
}

/// `patgate check`: the conf has loaded (validation is `Conf::load` itself); now reach Redis
/// over the connection the gateway would open: with `redis.freshness: tracked` or `confirmed`
/// that is RESP3 with `CLIENT TRACKING` on, so a server or an ACL user that refuses either
/// fails the check instead of every request of the running gateway (in confirmed mode the
/// check also raises a writers' fence, without taking a lease of its own). Then one request-path read the way the
/// gateway makes it (in strict mode on one plain-TCP server, over the read batcher's own
/// connection, store/wire.rs, which authenticates on its own).
///
/// # Errors
/// Redis unreachable within `redis.timeout_ms` (retried for up to one second).
pub fn check(conf: &Conf) -> Result<(), CheckError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CheckError::Runtime)?;
    runtime
        .block_on(async {
            // Confirmed mode's connection is tracked mode's; opened as confirmed, the check
            // would take a lease, and writers would wait for it after the check has exited.
            let confirmed = conf.redis.freshness == crate::conf::Freshness::Confirmed;
            let redis = crate::conf::RedisConf {
                freshness: if confirmed {
                    crate::conf::Freshness::Tracked
                } else {
                    conf.redis.freshness
                },
                ..conf.redis.clone()
            };
            let store = crate::store::Store::for_gateway(&redis, 1)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                let reached = async {
                    store.ping().await?;
                    store
                        .access("patgate-check", "patgate-check")
                        .await
                        .map(drop)
                };
                match reached.await {
                    // The writers' fence runs as a write would: the scripts are allowed, and
                    // every gateway holding a lease acknowledges.
                    Ok(()) if confirmed => return store.raise_fence().await,
                    Ok(()) => return Ok(()),
                    Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        })
        .map_err(|source| CheckError::Redis {
            path: conf.path.display().to_string(),
            key: conf.redis.topology.key(),
            url: conf.redis.topology.describe(),
            source,
        })?;
    println!(
        "{}: ok ({} routes, {} roles, redis reachable)",
        conf.path.display(),
        conf.routes.len(),
        conf.roles.names().count()
    );
    Ok(())
}

/// The Redis URL without its password, for logs.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{pingora_server_conf, redacted_url};
    use crate::conf::Conf;

    #[test]
    fn pingora_gets_the_threads_and_the_runtime_flavour_of_the_conf() {
        let default = pingora_server_conf(&Conf::minimal_with(""));
        assert_eq!((default.threads, default.work_stealing), (1, false));
        let stealing = pingora_server_conf(&Conf::minimal_with("server: {threads: 3}\n"));
        assert_eq!((stealing.threads, stealing.work_stealing), (3, true));
        let own = pingora_server_conf(&Conf::minimal_with(
            "server: {threads: 3, work_stealing: false}\n",
        ));
        assert_eq!((own.threads, own.work_stealing), (3, false));
    }

    #[test]
    fn passwords_are_redacted_from_redis_urls() {
        assert_eq!(
            redacted_url("redis://:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
