//! `outpost run`'s live view (`http.listen`): the pipeline's counters as `/metrics`,
//! `/healthz` and `/readiness`, the last frame's predictions (`/latest.json`), the annotated frame
//! (`/latest.jpg`, and `/stream.mjpeg` at most `http.stream_fps`), and `GET /`, one
//! self-contained page showing them.
//!
//! The pipeline feeds it as one more sink ([`LiveSink`]): it keeps the last JSON line always
//! (one string), but copies a frame only while someone watches, and the drawing and JPEG
//! encoding happen on the viewer's connection thread, never on the pipeline's.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use super::metrics::{self, Kind, Metrics};
use super::server::{Body, Handler, Rejection, Request, Response};
use crate::detector::Response as Answer;
use crate::pipeline::stats::Stats;
use crate::sinks::{Output, Sink};
use crate::vision::image::RgbImage;

/// A viewer asking for a frame keeps frames coming for this long.
const WANTED_FOR: Duration = Duration::from_secs(5);
/// No processed frame for this long: not ready.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// What the pipeline and the viewers share.
pub struct Live {
    /// Counters, as the pipeline last published them: the total, and per camera.
    pub stats: Arc<Mutex<Stats>>,
    pub cameras: Arc<Mutex<Vec<(String, Stats)>>>,
    latest: Mutex<Latest>,
    fresh: Condvar,
    watchers: AtomicUsize,
    /// Milliseconds since `started` until which frames are copied.
    wanted_until: AtomicU64,
    started: Instant,
    model: String,
    source: String,
    stream_fps: f64,
    generation: u64,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Latest {
    /// The last processed frame's id, JSON line and when it came.
    id: u64,
    json: Option<String>,
    at: Option<Instant>,
    /// The last copied frame, its predictions and frame id.
    frame: Option<(RgbImage, Answer, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Live {
    pub fn new(model: &str, source: &str, stream_fps: f64, generation: u64, stop: Arc<AtomicBool>) -> Arc<Live> {
        Arc::new(Live {
            stats: Arc::default(),
            cameras: Arc::default(),
            latest: Mutex::default(),
            fresh: Condvar::new(),
            watchers: AtomicUsize::new(0),
            wanted_until: AtomicU64::new(0),
            started: Instant::now(),
            model: model.to_string(),
            source: source.to_string(),
            stream_fps,
            generation,
            metrics: Metrics::default(),
            stop,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn wanted(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0 || self.now_ms() < self.wanted_until.load(Ordering::Relaxed)
    }

    fn want_frames(&self) {
        self.wanted_until.store(self.now_ms() + WANTED_FOR.as_millis() as u64, Ordering::Relaxed);
    }

    /// The next copied frame after `after` (a frame id), waiting up to `timeout`.
    fn frame_after(&self, after: u64, timeout: Duration) -> Option<(RgbImage, Answer, u64)> {
        let deadline = Instant::now() + timeout;
        let mut latest = lock(&self.latest);
        loop {
            if let Some((img, answer, id)) = &latest.frame {
                if *id > after {
                    return Some((img.clone(), answer.clone(), *id));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop.load(Ordering::Relaxed) {
                return None;
            }
            latest = self.fresh.wait_timeout(latest, left.min(Duration::from_millis(250))).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn ready(&self) -> Result<(), String> {
        let latest = lock(&self.latest);
        match latest.at {
            None => Err("no frame processed yet".into()),
            Some(at) if at.elapsed() > STALE_AFTER => Err(format!("no frame processed for {}s", at.elapsed().as_secs())),
            Some(_) => Ok(()),
        }
    }
}

/// Starts the live view on `http.listen` when it is set: the server runs on its own threads
/// until the process ends; the returned state is fed by a [`LiveSink`].
pub fn start(
    config: &crate::config::Config,
    model: &str,
    source: &str,
    generation: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<Arc<Live>>> {
    let Some(listen) = &config.http.listen else { return Ok(None) };
    let (listener, addr) = super::bind(listen, "http.listen")?;
    if !addr.ip().is_loopback() {
        log::warn!("the live view on {addr} is reachable beyond this machine, without authentication");
    }
    let live = Live::new(model, source, config.http.stream_fps, generation, stop.clone());
    let handler = Arc::new(LiveView(live.clone()));
    let limits = super::limits(config);
    std::thread::Builder::new().name("live-view".into()).spawn(move || {
        if let Err(e) = super::server::serve(listener, handler, limits, stop) {
            log::error!("live view on {addr}: {e}");
        }
    })?;
    log::info!("live view on http://{addr} (the page at /, Prometheus metrics at /metrics)");
    Ok(Some(live))
}

/// The sink that feeds [`Live`].
pub struct LiveSink(pub Arc<Live>);

impl Sink for LiveSink {
    fn name(&self) -> &'static str {
        "live view"
    }

    fn write(&mut self, out: &Output<'_>) -> anyhow::Result<()> {
        let live = &self.0;
        let time = match out.response {
            Answer::Detection(d) => d.time,
            Answer::Classification(c) => c.time,
        };
        live.metrics.inference(&live.model, time);
        let mut latest = lock(&live.latest);
        latest.id = out.frame_id;
        latest.json = Some(out.json.to_string());
        latest.at = Some(Instant::now());
        if live.wanted() {
            // Reuse the buffer of the frame it replaces.
            let mut img = match latest.frame.take() {
                Some((img, _, _)) => img,
                None => RgbImage::new(0, 0, Vec::new()),
            };
            img.width = out.image.width;
            img.height = out.image.height;
            img.data.clear();
            img.data.extend_from_slice(&out.image.data);
            latest.frame = Some((img, out.response.clone(), out.frame_id));
            live.fresh.notify_all();
        }
        Ok(())
    }

    fn flush(&mut self, _deadline: Instant) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Counts a streaming viewer for as long as it is held.
struct Watching(Arc<Live>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct LiveView(pub Arc<Live>);

impl Handler for LiveView {
    fn handle(&self, req: &Request) -> Response {
        let (route, resp) = self.route(req);
        self.0.metrics.request(route, resp.status);
        resp
    }

    fn rejected(&self, why: Rejection) {
        self.0.metrics.rejection(why.label());
    }
}

impl LiveView {
    fn route(&self, req: &Request) -> (&'static str, Response) {
        let live = &self.0;
        let route = match req.path.as_str() {
            "/" | "/index.html" => "/",
            "/metrics" => "/metrics",
            "/healthz" => "/healthz",
            "/readiness" => "/readiness",
            "/latest.json" => "/latest.json",
            "/latest.jpg" => "/latest.jpg",
            "/stream.mjpeg" => "/stream.mjpeg",
            "/stats.json" => "/stats.json",
            _ => return ("other", Response::error(404, format!("no route {}: see / for the live view", super::short(&req.path)))),
        };
        if req.method != "GET" && req.method != "HEAD" {
            return (route, Response::error(405, format!("{route} takes GET")));
        }
        let resp = match route {
            "/" => Response::new(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
            "/healthz" => Response::json(200, &json!({"status": "healthy"})),
            "/readiness" => match live.ready() {
                Ok(()) => Response::json(200, &json!({"status": "ready"})),
                Err(why) => Response::json(503, &json!({"status": "not ready", "message": why})),
            },
            "/latest.json" => match lock(&live.latest).json.clone() {
                Some(line) => Response::new(200, "application/json", line.into_bytes()),
                None => Response::error(404, "no frame processed yet"),
            },
            "/stats.json" => Response::json(200, &self.stats_json()),
            "/metrics" => self.metrics_text(),
            "/latest.jpg" => {
                live.want_frames();
                // Frames are copied only on demand: wait for a current one, else show the last.
                let current = lock(&live.latest).id;
                let frame = live
                    .frame_after(current.saturating_sub(1), Duration::from_secs(3))
                    .or_else(|| live.frame_after(0, Duration::ZERO));
                match frame {
                    Some((img, answer, id)) => match annotated_jpeg(img, &answer) {
                        Ok(jpeg) => Response::new(200, "image/jpeg", jpeg).with_header("X-Frame-Id", id.to_string()),
                        Err(e) => Response::error(500, format!("{e:#}")),
                    },
                    None => Response::error(503, "no frame yet; retry shortly").with_header("Retry-After", "1"),
                }
            }
            _ => self.stream(),
        };
        let resp = resp.with_header("Cache-Control", "no-store");
        (route, resp)
    }

    /// `multipart/x-mixed-replace` JPEGs, one per new frame, at most `http.stream_fps`, until
    /// the viewer leaves or the run stops.
    fn stream(&self) -> Response {
        let live = self.0.clone();
        live.watchers.fetch_add(1, Ordering::Relaxed);
        let watching = Watching(live.clone());
        let period = Duration::from_secs_f64(1.0 / live.stream_fps.max(0.1));
        let body = Box::new(move |out: &mut dyn std::io::Write| -> std::io::Result<()> {
            let _watching = watching;
            let mut last = 0;
            while !live.stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let Some((img, answer, id)) = live.frame_after(last, Duration::from_secs(1)) else { continue };
                last = id;
                let jpeg = annotated_jpeg(img, &answer).map_err(std::io::Error::other)?;
                write!(out, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len())?;
                out.write_all(&jpeg)?;
                out.write_all(b"\r\n")?;
                out.flush()?;
                std::thread::sleep(period.saturating_sub(started.elapsed()));
            }
            Ok(())
        });
        Response {
            status: 200,
            headers: vec![("Content-Type", "multipart/x-mixed-replace; boundary=frame".to_string())],
            body: Body::Stream(body),
        }
    }

    fn stats_json(&self) -> serde_json::Value {
        let live = &self.0;
        let s = lock(&live.stats).clone();
        let uptime = live.started.elapsed().as_secs_f64();
        json!({
            "model": live.model,
            "source": live.source,
            "uptime_s": uptime,
            "captured": s.captured,
            "processed": s.processed,
            "dropped": s.dropped,
            "capture_errors": s.capture_errors,
            "frame_errors": s.frame_errors,
            "sink_errors": s.sink_errors,
            "fps": s.processed as f64 / uptime.max(1e-9),
        })
    }

    fn metrics_text(&self) -> Response {
        let live = &self.0;
        let s = lock(&live.stats).clone();
        let counter = |name, help, v: u64| (name, help, Kind::Counter, v as f64);
        let text = live.metrics.render(&[
            counter("outpost_frames_captured_total", "Frames the source delivered.", s.captured),
            counter("outpost_frames_processed_total", "Frames through the model and the sinks.", s.processed),
            counter("outpost_frames_dropped_total", "Frames replaced by newer ones before the model took them.", s.dropped),
            counter("outpost_capture_errors_total", "Capture or device errors.", s.capture_errors),
            counter("outpost_frame_errors_total", "Frames that failed conversion or inference.", s.frame_errors),
            counter("outpost_sink_errors_total", "Sink writes that failed.", s.sink_errors),
            counter(
                "outpost_frames_overlapped_total",
                "Frames prepared while the model ran the previous one (run.overlap).",
                s.overlapped,
            ),
            ("outpost_models_loaded", "Models held in memory.", Kind::Gauge, 1.0),
            ("outpost_cache_generation", "The model cache's generation in use.", Kind::Gauge, live.generation as f64),
            ("outpost_process_resident_bytes", "Resident memory of this process.", Kind::Gauge, metrics::rss_bytes() as f64),
            ("outpost_uptime_seconds", "Seconds since the run started.", Kind::Gauge, live.started.elapsed().as_secs_f64()),
        ]) + &per_camera(&lock(&live.cameras));
        Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
    }
}

/// The frame counters again, per camera (`camera` label): which camera drops or fails.
fn per_camera(cameras: &[(String, Stats)]) -> String {
    use std::fmt::Write as _;
    let series: [(&str, &str, fn(&Stats) -> u64); 5] = [
        ("captured", "Frames the camera delivered.", |s| s.captured),
        ("processed", "Frames through the model and the sinks.", |s| s.processed),
        ("dropped", "Frames replaced by newer ones before the model took them.", |s| s.dropped),
        ("capture_errors", "Capture, connection or device errors (each followed by a reconnect).", |s| s.capture_errors),
        ("frame_errors", "Frames that failed decoding, conversion or inference.", |s| s.frame_errors),
    ];
    let mut out = String::new();
    for (what, help, value) in series {
        let name = format!("outpost_camera_frames_{what}_total");
        let name = name.replace("frames_capture_errors", "capture_errors").replace("frames_frame_errors", "frame_errors");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (camera, stats) in cameras {
            let _ = writeln!(out, "{name}{{camera=\"{}\"}} {}", metrics::escape(camera), value(stats));
        }
    }
    out
}

fn annotated_jpeg(mut img: RgbImage, answer: &Answer) -> anyhow::Result<Vec<u8>> {
    crate::sinks::draw_predictions(&mut img, answer);
    let mut jpeg = Vec::new();
    crate::sinks::encode_jpeg(&img, 85, &mut jpeg)?;
    Ok(jpeg)
}

/// The live page: no external assets; the stream in an <img>, the predictions and counters
/// polled once a second.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>outpost live</title>
<style>
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#111;color:#eee}
header{padding:8px 12px;background:#222}h1{font-size:16px;margin:0;display:inline}
#src{color:#9ab;margin-left:12px}main{display:flex;flex-wrap:wrap;gap:12px;padding:12px}
#live{max-width:100%;height:auto;background:#000;display:block}
section{min-width:260px}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #333}
</style></head><body>
<header><h1>outpost</h1><span id="src"></span></header>
<main><div><img id="live" src="/stream.mjpeg" alt="live annotated stream"></div>
<section><h2>Predictions</h2><table id="preds"><tr><th>class</th><th>confidence</th><th>box</th></tr></table>
<h2>Pipeline</h2><table id="stats"></table></section></main>
<script>
function cell(tr,t){var td=document.createElement('td');td.textContent=t;tr.appendChild(td);}
function poll(){
 fetch('/latest.json').then(function(r){return r.ok?r.json():null}).then(function(j){
  if(!j)return;var t=document.getElementById('preds');while(t.rows.length>1)t.deleteRow(1);
  (j.predictions||[]).forEach(function(p){var tr=t.insertRow();cell(tr,p['class']);cell(tr,p.confidence.toFixed(2));
   cell(tr,p.width!==undefined?Math.round(p.x)+','+Math.round(p.y)+' '+Math.round(p.width)+'x'+Math.round(p.height):'');});
 }).catch(function(){});
 fetch('/stats.json').then(function(r){return r.json()}).then(function(s){
  document.getElementById('src').textContent=s.model+' on '+s.source;var t=document.getElementById('stats');t.innerHTML='';
  ['processed','captured','dropped','frame_errors','capture_errors','sink_errors'].forEach(function(k){var tr=t.insertRow();cell(tr,k);cell(tr,s[k]);});
  var tr=t.insertRow();cell(tr,'fps');cell(tr,s.fps.toFixed(1));
 }).catch(function(){});
}
poll();setInterval(poll,1000);
</script></body></html>
"#;
