//! The Roboflow Inference HTTP API (../shared/specs/inference-http-api.md) over the model
//! registry: `/info`, `/model/*`, `/infer/object_detection|classification`, the legacy v0 route
//! `POST /{dataset}/{version}`, and `/healthz`, `/readiness`, `/metrics`. Routes that only read the
//! registry never wait behind an inference.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::infer::{self, Options};
use super::metrics::{self, Kind, Metrics};
use super::server::{Budget, Handler, Rejection, Request, Response};
use crate::detector::Response as Answer;
use crate::models::registry::{InferError, LoadError, LoadedModel, Registry, Task};
use crate::redact::Secret;

pub struct Api {
    registry: Arc<Registry>,
    /// Memory for decoded images, all requests together (see [`Api::new`]).
    decoded: Budget,
    metrics: Metrics,
    keys: Vec<[u8; 32]>,
    uuid: String,
    started: Instant,
}

impl Api {
    /// Decoded images waiting for or in inference may hold three of the largest images
    /// (`inference.max_image_megapixels`) at once; beyond that a request gets 429 rather than
    /// the board running out of memory.
    pub fn new(registry: Arc<Registry>, keys: &[Secret]) -> Api {
        let largest = crate::vision::image::max_pixels().saturating_mul(3) as usize;
        Api {
            registry,
            decoded: Budget::new(largest.saturating_mul(3)),
            metrics: Metrics::default(),
            keys: keys.iter().map(|k| digest(k.expose().as_bytes())).collect(),
            uuid: crate::vision::response::uuid_v4(),
            started: Instant::now(),
        }
    }
}

impl Handler for Api {
    fn handle(&self, req: &Request) -> Response {
        let started = Instant::now();
        let (route, resp) = self.route(req);
        self.metrics.request(route, resp.status);
        if resp.status >= 500 {
            log::warn!("{} {}: {}", req.method, route, resp.status);
        }
        resp.with_header("Access-Control-Allow-Origin", "*")
            .with_header("X-Processing-Time", format!("{:.6}", started.elapsed().as_secs_f64()))
    }

    fn rejected(&self, why: Rejection) {
        self.metrics.rejection(why.label());
    }
}

/// Why a request gets no answer from a route.
type Refusal = Response;

impl Api {
    /// The route's metric label (a fixed name, never the raw path) and the answer.
    fn route(&self, req: &Request) -> (&'static str, Response) {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let route = match (req.method.as_str(), segments.as_slice()) {
            (_, ["info"]) => "/info",
            (_, ["healthz"]) => "/healthz",
            (_, ["readiness"]) => "/readiness",
            (_, ["metrics"]) => "/metrics",
            (_, ["model", "registry"]) => "/model/registry",
            (_, ["model", "add"]) => "/model/add",
            (_, ["model", "remove"]) => "/model/remove",
            (_, ["model", "clear"]) => "/model/clear",
            (_, ["infer", "object_detection"]) => "/infer/object_detection",
            (_, ["infer", "classification"]) => "/infer/classification",
            ("POST", [a, b]) if !a.is_empty() && !b.is_empty() => "/{dataset}/{version}",
            _ => "other",
        };
        if req.method == "OPTIONS" {
            return (route, cors_preflight());
        }
        let expected = match route {
            "/model/add" | "/model/remove" | "/model/clear" | "/infer/object_detection" | "/infer/classification"
            | "/{dataset}/{version}" => "POST",
            "other" => return (route, Response::error(404, format!("no route {} {}", req.method, super::short(&req.path)))),
            _ => "GET",
        };
        if req.method != expected && !(expected == "GET" && req.method == "HEAD") {
            return (route, Response::error(405, format!("{route} takes {expected}, not {}", req.method)));
        }
        let resp = match route {
            "/info" => Response::json(
                200,
                &json!({ "name": "outpost", "version": env!("CARGO_PKG_VERSION"), "uuid": self.uuid }),
            ),
            "/healthz" => Response::json(200, &json!({ "status": "healthy" })),
            "/readiness" => Response::json(200, &json!({ "status": "ready" })),
            _ => match self.authorised(req) {
                Err(refusal) => refusal,
                Ok(body) => match route {
                    "/metrics" => self.metrics_text(),
                    "/model/registry" => self.registry_json(),
                    "/model/add" => self.add(&body),
                    "/model/remove" => self.remove(&body),
                    "/model/clear" => {
                        self.registry.clear();
                        self.registry_json()
                    }
                    "/infer/object_detection" => self.infer_v1(&body, Task::ObjectDetection),
                    "/infer/classification" => self.infer_v1(&body, Task::Classification),
                    _ => self.infer_v0(req, &format!("{}/{}", segments[0], segments[1])),
                },
            },
        };
        (route, resp)
    }

    /// The JSON body (`Null` when there is none), after checking the API key when keys are
    /// configured: query `api_key`, `Authorization: Bearer`, or the body's `api_key`.
    fn authorised(&self, req: &Request) -> Result<Value, Refusal> {
        let body = if req.body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else if req.path.starts_with("/infer/") || req.path.starts_with("/model/") {
            serde_json::from_slice(&req.body)
                .map_err(|e| Response::error(400, format!("the body is not valid JSON: {e}")))?
        } else {
            Value::Null
        };
        if self.keys.is_empty() {
            return Ok(body);
        }
        let offered: Vec<String> = [
            req.query_param("api_key"),
            req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).map(|k| k.trim().to_string()),
            body.get("api_key").and_then(Value::as_str).map(String::from),
        ]
        .into_iter()
        .flatten()
        .filter(|k| !k.is_empty() && k != "None")
        .collect();
        if offered.is_empty() {
            return Err(Response::error(
                401,
                "an API key is required (serve.api_keys): send it as the api_key query parameter, the JSON body's \
                 api_key, or Authorization: Bearer",
            ));
        }
        if offered.iter().any(|k| self.known_key(k)) {
            Ok(body)
        } else {
            Err(Response::error(403, "the API key is not one of serve.api_keys"))
        }
    }

    /// Compares digests in constant time, so neither a key's bytes nor its length leak by timing.
    fn known_key(&self, offered: &str) -> bool {
        let d = digest(offered.as_bytes());
        self.keys.iter().fold(false, |found, k| found | (k.iter().zip(d.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0))
    }

    /// The key a client sent, as a Roboflow key for on-demand provisioning: only when outpost
    /// itself requires no keys (then a client's key is its Roboflow key, as with the real
    /// server); with serve.api_keys the key is outpost's, and roboflow.api_key is used instead.
    fn roboflow_key<'a>(&self, sent: Option<&'a str>) -> Option<&'a str> {
        sent.filter(|k| self.keys.is_empty() && !k.is_empty() && *k != "None" && *k != "null")
    }

    fn registry_json(&self) -> Response {
        let models: Vec<Value> = self
            .registry
            .list()
            .into_iter()
            .map(|m| {
                json!({
                    "model_id": m.name,
                    "task_type": m.task.wire_name(),
                    "batch_size": null,
                    "input_width": m.input.map(|[w, _]| w),
                    "input_height": m.input.map(|[_, h]| h),
                })
            })
            .collect();
        Response::json(200, &json!({ "models": models }))
    }

    fn add(&self, body: &Value) -> Response {
        let Some(id) = body.get("model_id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
            return Response::error(400, "`model_id` (a string) is required");
        };
        match self.registry.load(id, self.roboflow_key(body.get("api_key").and_then(Value::as_str))) {
            Ok(_) => self.registry_json(),
            Err(e) => load_error(e),
        }
    }

    fn remove(&self, body: &Value) -> Response {
        let Some(id) = body.get("model_id").and_then(Value::as_str) else {
            return Response::error(400, "`model_id` (a string) is required");
        };
        // Unloading a model that is not loaded is a no-op, as on the real server.
        self.registry.remove(id);
        self.registry_json()
    }

    fn infer_v1(&self, body: &Value, task: Task) -> Response {
        let request = match infer::parse_v1(body) {
            Ok(r) => r,
            Err(m) => return Response::error(400, m),
        };
        let key = self.roboflow_key(body.get("api_key").and_then(Value::as_str));
        let model = match self.model_for(&request.model_id, task, key) {
            Ok(m) => m,
            Err(refusal) => return refusal,
        };
        let mut answers = Vec::with_capacity(request.images.len());
        for (i, bytes) in request.images.iter().enumerate() {
            match self.run(&model, bytes, &request.options) {
                Ok(a) => answers.push(a),
                Err(mut refusal) if request.list => {
                    refusal = prefix_message(refusal, &format!("image[{i}]: "));
                    return refusal;
                }
                Err(refusal) => return refusal,
            }
        }
        let resp = if request.list { Response::json(200, &answers) } else { Response::json(200, &answers[0]) };
        resp.with_header("X-Model-Id", model.id.clone())
    }

    fn infer_v0(&self, req: &Request, model_id: &str) -> Response {
        let (bytes, options) = match infer::parse_v0(req) {
            Ok(r) => r,
            Err(m) => return Response::error(400, m),
        };
        let key = req.query_param("api_key");
        let model = match self.registry.load(model_id, self.roboflow_key(key.as_deref())) {
            Ok(m) => m,
            Err(e) => return load_error(e),
        };
        match self.run(&model, &bytes, &options) {
            Ok(answer) => Response::json(200, &answer).with_header("X-Model-Id", model.id.clone()),
            Err(refusal) => refusal,
        }
    }

    /// The model, loaded if needed, checked to do what the route asks.
    fn model_for(&self, id: &str, task: Task, key: Option<&str>) -> Result<Arc<LoadedModel>, Refusal> {
        let model = self.registry.load(id, key).map_err(load_error)?;
        if model.task != task {
            let route = match model.task {
                Task::ObjectDetection => "/infer/object_detection",
                Task::Classification => "/infer/classification",
            };
            return Err(Response::error(400, format!("model `{id}` is a {} model: use {route}", model.task.wire_name())));
        }
        Ok(model)
    }

    /// One image through `model`: the answer as JSON, with `visualization` (the annotated image
    /// as base64 JPEG) when the request asked for it.
    fn run(&self, model: &LoadedModel, bytes: &[u8], options: &Options) -> Result<Value, Refusal> {
        // The decoded image's memory is reserved from its header first (an oversized one is
        // refused by the decoder below, before any allocation).
        let pixels = crate::vision::image::dimensions(bytes).map_or(0, |(w, h)| u64::from(w) * u64::from(h));
        let need = pixels.min(crate::vision::image::max_pixels()) as usize * 3;
        let Some(_memory) = self.decoded.take(need) else {
            self.metrics.rejection("image_memory");
            return Err(Response::error(429, "other images being processed use the memory set aside for them; retry shortly")
                .with_header("Retry-After", "1"));
        };
        let img = infer::decode_image(bytes).map_err(|m| Response::error(400, m))?;
        let mut thresholds = options.thresholds;
        if options.class_filter.is_some() {
            // Filter first, then keep the best `max_detections`.
            thresholds.max_detections = crate::vision::detection::MAX_DETECTIONS;
        }
        let started = Instant::now();
        let (mut answer, mut img) = match model.infer(img, thresholds) {
            Ok(a) => a,
            Err(InferError::QueueFull) => {
                self.metrics.rejection("queue_full");
                return Err(Response::error(
                    429,
                    format!("model `{}` is busy: its queue (serve.queue) is full; retry shortly", model.id),
                )
                .with_header("Retry-After", "1"));
            }
            Err(InferError::Failed(e)) => {
                log::warn!("model `{}`: {e:#}", model.id);
                return Err(Response::error(500, format!("model `{}` failed on this image: {e:#}", model.id)));
            }
        };
        self.metrics.inference(&model.id, started.elapsed().as_secs_f64());
        if let Some(names) = &options.class_filter {
            filter_classes(&mut answer, names, options.thresholds.max_detections);
        }
        let mut json = serde_json::to_value(&answer).unwrap_or(Value::Null);
        if options.visualize {
            use base64::Engine as _;
            crate::sinks::draw_predictions(&mut img, &answer);
            let mut jpeg = Vec::new();
            if crate::sinks::encode_jpeg(&img, 85, &mut jpeg).is_ok() {
                json["visualization"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&jpeg));
            }
        }
        Ok(json)
    }

    fn metrics_text(&self) -> Response {
        let generation = self.registry.cache().current().ok().flatten().map_or(0.0, |g| g.generation as f64);
        let loaded = self.registry.loaded();
        let waiting: usize = loaded.iter().map(|m| m.in_flight()).sum();
        let text = self.metrics.render(&[
            ("outpost_models_loaded", "Models held in memory.", Kind::Gauge, loaded.len() as f64),
            ("outpost_requests_in_flight", "Inference requests running or queued.", Kind::Gauge, waiting as f64),
            ("outpost_cache_generation", "The model cache's current generation.", Kind::Gauge, generation),
            ("outpost_process_resident_bytes", "Resident memory of this process.", Kind::Gauge, metrics::rss_bytes() as f64),
            ("outpost_uptime_seconds", "Seconds since the server started.", Kind::Gauge, self.started.elapsed().as_secs_f64()),
        ]);
        Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
    }
}

fn load_error(e: LoadError) -> Response {
    match e {
        LoadError::Unknown(m) => Response::error(404, m),
        LoadError::Loading(m) => Response::error(503, m).with_header("Retry-After", "1"),
        LoadError::KeyRequired(m) => Response::error(401, m),
        LoadError::KeyRejected(m) => Response::error(403, m),
        LoadError::Failed(e) => {
            log::warn!("model load failed: {e:#}");
            Response::error(500, format!("{e:#}"))
        }
    }
}

/// Keeps predictions of the named classes, at most `max` of them (they are sorted by confidence).
fn filter_classes(answer: &mut Answer, names: &[String], max: usize) {
    match answer {
        Answer::Detection(d) => {
            d.predictions.retain(|p| names.contains(&p.class));
            d.predictions.truncate(max);
        }
        Answer::Classification(c) => c.predictions.retain(|p| names.contains(&p.class)),
    }
}

fn prefix_message(resp: Response, prefix: &str) -> Response {
    let super::server::Body::Bytes(body) = &resp.body else { return resp };
    let Some(message) = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["message"].as_str().map(String::from))
    else {
        return resp;
    };
    let mut out = Response::error(resp.status, format!("{prefix}{message}"));
    out.headers.extend(resp.headers.into_iter().filter(|(n, _)| *n != "Content-Type"));
    out
}

fn cors_preflight() -> Response {
    Response::new(200, "application/json", b"{}".to_vec())
        .with_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        .with_header("Access-Control-Allow-Headers", "*")
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

