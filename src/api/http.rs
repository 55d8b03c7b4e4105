//! Serves [`Service`] over HTTP/1.1 with tiny_http on a few side threads.
//! No worker ever waits on HTTP. (Webhooks leave from the runtime's HTTP
//! side threads, [`crate::hooks::dispatch`].)

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{ApiRequest, ApiResponse, Service};
use crate::config::Config;
use crate::runtime::Control;

/// Threads answering HTTP requests (a big job's target resolution on one
/// does not hold up the others).
const HANDLERS: usize = 4;

/// A running API.
pub struct Api {
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    pub service: Arc<Service>,
    /// The address actually bound.
    pub addr: SocketAddr,
}

impl Api {
    /// Binds `addr` and starts serving `ctl`'s runtime.
    pub fn start(addr: SocketAddr, cfg: &Config, ctl: Control) -> std::io::Result<Api> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| {
                std::io::Error::other(format!(
                    "api.listen {addr}: {e}; choose another address (--api-listen or api.listen), or \"\" to run without the API"
                ))
            })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("api.listen: not an IP address"))?;
        let server = Arc::new(server);
        let service = Arc::new(Service::new(ctl, &cfg.api, &cfg.notify).with_cluster(cfg));
        let mut threads = Vec::with_capacity(HANDLERS);
        for i in 0..HANDLERS {
            let (server, service) = (server.clone(), service.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tether-api{i}"))
                    .spawn(move || serve(&server, &service))?,
            );
        }
        tracing::info!(%addr, clients = cfg.api.clients.len(), "control API listening");
        Ok(Api {
            server,
            threads,
            service,
            addr,
        })
    }

    /// Stops accepting requests and waits for the handler threads.
    pub fn shutdown(mut self) {
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, service: &Service) {
    while let Ok(mut req) = server.recv() {
        let resp = answer(&mut req, service);
        let mut r = tiny_http::Response::from_string(resp.body).with_status_code(resp.status);
        let mut headers = vec![("Content-Type", resp.content_type.to_owned())];
        headers.extend(resp.headers);
        for (k, v) in headers {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                r.add_header(h);
            }
        }
        let _ = req.respond(r);
    }
}

fn answer(req: &mut tiny_http::Request, service: &Service) -> ApiResponse {
    let max = service.max_body();
    if req.body_length().is_some_and(|n| n > max) {
        return ApiResponse::error(413, "body too large (api.max_body)");
    }
    let mut body = Vec::new();
    if req
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .is_err()
    {
        return ApiResponse::error(400, "could not read the body");
    }
    if body.len() > max {
        return ApiResponse::error(413, "body too large (api.max_body)");
    }
    let source = req
        .remote_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let url = req.url().to_owned();
    service.handle(&ApiRequest {
        method: &method,
        url: &url,
        source,
        authorization: authorization.as_deref(),
        body: &body,
    })
}
