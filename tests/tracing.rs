//! A `tracing` span per call on both sides, linked across hops through `Call.metadata`:
//! one trace shows A -> B -> C.

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Condvar, Mutex};

use support::{LIMIT, block_on, server, url};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A closed span of the `distributed_scope::call` target: its name and fields.
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<&'static str, String>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or_else(
            || panic!("span {self:?} has no field `{name}`"),
            String::as_str,
        )
    }
}

struct Fields<'a>(&'a mut BTreeMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// Records the call spans into a list, and signals each one that closes.
#[derive(Clone, Default)]
struct Capture {
    closed: Arc<(Mutex<Vec<Captured>>, Condvar)>,
}

impl Capture {
    /// Waits until `count` spans have closed, then returns them.
    fn wait_for(&self, count: usize) -> Vec<Captured> {
        let (closed, signal) = &*self.closed;
        let (closed, timeout) = signal
            .wait_timeout_while(closed.lock().unwrap(), LIMIT, |closed| closed.len() < count)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} spans closed: {closed:#?}",
            closed.len()
        );
        closed.clone()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != "distributed_scope::call" {
            return;
        }
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ctx.span(id).expect("a new span is known");
        span.extensions_mut().insert(Captured {
            name: attrs.metadata().name(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(captured) = span.extensions_mut().get_mut::<Captured>()
        {
            values.record(&mut Fields(&mut captured.fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(captured) = span.extensions_mut().remove::<Captured>()
        {
            let (closed, signal) = &*self.closed;
            closed.lock().unwrap().push(captured);
            signal.notify_all();
        }
    }
}

#[test]
fn three_hop_call_is_one_trace_linking_a_to_b_to_c() {
    let capture = Capture::default();
    // Peers run on their own threads: the subscriber must be global.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .expect("no other subscriber in this test binary");

    let (a, b, c) = (server("trace-a"), server("trace-b"), server("trace-c"));
    let (ida, idb, idc) = (a.handle().id(), b.handle().id(), c.handle().id());
    let (urla, urlb, urlc) = (url(a.handle()), url(b.handle()), url(c.handle()));
    let visited = block_on(async move {
        a.handle().connect(&urlb).await.unwrap();
        b.handle().connect(&urlc).await.unwrap();
        c.handle().connect(&urla).await.unwrap();
        // A (local) -> B -> C -> A.
        a.handle().run(blocks::chain(ida, idb, idc)).await
    });
    assert_eq!(visited, Ok(vec![ida, idb, idc, ida]));

    // Four calls (the first one local on A) and three served hops.
    let spans = capture.wait_for(7);
    assert_eq!(spans.len(), 7, "{spans:#?}");
    let trace = spans[0].field("trace_id").to_owned();
    assert_eq!(trace.len(), 32);
    for span in &spans {
        assert_eq!(span.field("trace_id"), trace, "one trace: {spans:#?}");
        assert_eq!(span.field("outcome"), "ok");
        assert!(span.field("duration_ms").parse::<f64>().unwrap() >= 0.0);
        assert!(span.field("deadline_ms").parse::<u64>().unwrap() > 0);
        assert!(span.field("block").starts_with("blocks"));
        assert_eq!(span.field("block_id").len(), 16);
    }
    let call = |caller: distributed_scope::PeerId, callee: distributed_scope::PeerId| {
        let (caller, callee) = (caller.to_string(), callee.to_string());
        let found: Vec<&Captured> = spans
            .iter()
            .filter(|span| {
                span.name == "call"
                    && span.field("caller") == caller
                    && span.field("callee") == callee
            })
            .collect();
        assert_eq!(found.len(), 1, "one call {caller} -> {callee}: {spans:#?}");
        found[0]
    };
    let served = |call: &Captured| {
        let found: Vec<&Captured> = spans
            .iter()
            .filter(|span| span.name == "serve" && span.field("call_id") == call.field("call_id"))
            .collect();
        assert_eq!(found.len(), 1, "the callee's span of {call:?}: {spans:#?}");
        found[0]
    };

    let local = call(ida, ida);
    assert_eq!(local.field("local"), "true");
    assert!(!local.fields.contains_key("parent_id"));
    let a_to_b = call(ida, idb);
    let b_to_c = call(idb, idc);
    let c_to_a = call(idc, ida);
    // Each hop's call names the call it was made from as its parent ...
    assert_eq!(a_to_b.field("parent_id"), local.field("call_id"));
    assert_eq!(b_to_c.field("parent_id"), a_to_b.field("call_id"));
    assert_eq!(c_to_a.field("parent_id"), b_to_c.field("call_id"));
    // ... and each remote call has its callee's span, on the callee, with the same ids.
    for (hop, caller, callee) in [(a_to_b, ida, idb), (b_to_c, idb, idc), (c_to_a, idc, ida)] {
        assert_eq!(hop.field("local"), "false");
        let serve = served(hop);
        assert_eq!(serve.field("caller"), caller.to_string());
        assert_eq!(serve.field("callee"), callee.to_string());
        assert_eq!(serve.field("block"), hop.field("block"));
        assert_eq!(serve.field("block_id"), hop.field("block_id"));
    }
}
