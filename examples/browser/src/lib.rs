//! The seed demo in a browser tab: the browser is the client, a native peer the server.
//!
//! ```text
//! scripts/browser-test.sh --demo     # builds this crate, starts `cargo run --example peer`,
//!                                    # serves www/ and prints the page's URL
//! ```
//!
//! The page (`www/index.html`) calls [`run_demo`] with the server's URL. The browser opens a
//! link, runs `blocks::demo(server, browser)`: hop 1 runs on the server, which hops back into
//! the browser (hop 2, a block of this wasm build), then finishes on the server (hop 3). The
//! page lists each step the browser sees, and the result `([42; 43], 44)`.

use std::cell::RefCell;
use std::fmt::Write as _;

use distributed_scope::{BrowserPeer, PeerId};
use wasm_bindgen::prelude::*;

/// Runs the seed demo against the peer at `server_url`, reporting each step to `log` (a JS
/// function taking a string). Resolves to the result as text, or rejects with the error.
#[wasm_bindgen]
pub async fn run_demo(server_url: String, log: js_sys::Function) -> Result<String, JsError> {
    PageLog::install(log);
    let browser = BrowserPeer::new(PeerId::random());
    PageLog::line(&format!(
        "browser peer {} connecting to {server_url}",
        blocks::short(browser.id())
    ));
    let server = browser.connect(&server_url).await?;
    PageLog::line(&format!("linked to server {}", blocks::short(server)));
    PageLog::line(&format!(
        "hop 1: calling blocks::demo on server {} (a = 42 is set there)",
        blocks::short(server)
    ));
    let (copies, sum) = browser.run(blocks::demo(server, browser.id())).await?;
    PageLog::line(&format!(
        "hop 3 done on the server: {} copies of 42 came back from the browser, a + 2 = {sum}",
        copies.len()
    ));
    let all_42 = copies.iter().all(|&a| a == 42);
    Ok(format!(
        "([42; {}], {sum}){}",
        copies.len(),
        if all_42 { "" } else { " (unexpected values)" }
    ))
}

thread_local! {
    static SINK: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

/// Shows the browser peer's own `tracing` events (links, inbound calls) on the page: hop 2
/// is the server calling a block in this wasm build.
struct PageLog;

impl PageLog {
    fn install(sink: js_sys::Function) {
        SINK.with(|slot| *slot.borrow_mut() = Some(sink));
        // Only the first install sets the subscriber; later runs just swap the sink.
        let _already_set = tracing::subscriber::set_global_default(PageLog);
    }

    fn line(text: &str) {
        SINK.with(|slot| {
            if let Some(sink) = slot.borrow().as_ref() {
                let _ignored = sink.call1(&JsValue::NULL, &JsValue::from_str(text));
            }
        });
    }
}

impl tracing::Subscriber for PageLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("distributed_scope")
            && *metadata.level() <= tracing::Level::DEBUG
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let text = if fields.message == "call in" {
            format!(
                "hop 2: the server runs a block in this browser:{}",
                fields.rest
            )
        } else {
            format!("{}{}", fields.message, fields.rest)
        };
        PageLog::line(&text);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _infallible = write!(self.message, "{value:?}");
        } else {
            let _infallible = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _infallible = write!(self.rest, " {}={value}", field.name());
        }
    }
}
