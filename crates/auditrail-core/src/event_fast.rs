//! The fast path of event preparation: an event parsed straight from its JSON text into
//! borrowed, typed parts, without building (and dropping) a `serde_json::Value` tree with
//! an allocation per key and string.
//!
//! It only ever accepts. Anything it does not take in its stride — an unknown or repeated
//! member, a value of the wrong type, any limit crossed, an org catalog to apply — makes
//! it answer `None`, and the caller prepares the event from a `Value` with
//! [`super::prepare`], which names every problem. On the events it accepts it produces
//! exactly what [`super::prepare`] produces; the tests compare the two.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use super::{
    ACTOR_FIELDS, ACTOR_TYPES, MAX_ACTION_LEN, MAX_ID_LEN, MAX_TEXT_LEN, OUTCOMES, PreparedEvent,
    RESOURCE_FIELDS, Rules, Terms, member, text_reason,
};
use crate::canonical::{MAX_SAFE_INTEGER, key_order, write_string};
use crate::time;

/// A string, borrowed from the input when it had no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Appends a string read from the input as its canonical JSON literal. One borrowed from
/// the input had no escape there, and inside a JSON string raw quotes, backslashes and
/// control characters are not allowed (serde_json refuses them): such a string needs no
/// escaping, so it is copied without the scan [`write_string`] makes.
#[expect(
    clippy::ptr_arg,
    reason = "the variant is what it reads: borrowed means the input had no escape"
)]
fn write_input_str(s: &Cow<'_, str>, out: &mut String) {
    match s {
        Cow::Borrowed(b) => {
            debug_assert!(!b.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\'));
            out.reserve(b.len() + 2);
            out.push('"');
            out.push_str(b);
            out.push('"');
        }
        Cow::Owned(o) => write_string(o, out),
    }
}

/// Any JSON value, strings borrowed where they can be; members in the order sent.
enum Json<'a> {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Json::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Json::Bool(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Json::U(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Json::I(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Ok(Json::F(n))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = seq.next_element()? {
                    items.push(x);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(Str(k)) = map.next_key()? {
                    members.push((k, map.next_value()?));
                }
                Ok(Json::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// A small object of string values (`actor`, `resource`, `scope`, `context`); `None` is
/// a null value. Members in the order sent.
struct Fields<'a>(Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(8);
                while let Some(Str(k)) = map.next_key()? {
                    let v: Option<Str<'de>> = map.next_value()?;
                    members.push((k, v.map(|s| s.0)));
                }
                Ok(Fields(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether two member names are equal. Names are a few bytes long: compared in place,
/// not through a call to the C library's `memcmp` as `==` on strings is.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| same_name(k, name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every key allowed and sent once, every non-null value a valid text.
    fn valid(&self, allowed: &[(&str, usize)]) -> bool {
        self.0.iter().enumerate().all(|(i, (k, v))| {
            let Some((_, max)) = allowed.iter().find(|(name, _)| same_name(name, k)) else {
                return false;
            };
            !self.0[..i].iter().any(|(earlier, _)| same_name(earlier, k))
                && v.as_deref().is_none_or(|s| text_reason(s, 1, *max).is_ok())
        })
    }

    /// Canonical text of the non-null members.
    fn write(&self, out: &mut String) {
        // Members are few (the checks before allow at most 16): their order is sorted
        // on the stack, by insertion.
        let mut order = [0u8; 16];
        let mut n = 0;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if v.is_none() {
                continue;
            }
            if n == order.len() {
                return self.write_many(out);
            }
            let mut j = n;
            while j > 0 && key_order(&self.0[usize::from(order[j - 1])].0, k).is_gt() {
                order[j] = order[j - 1];
                j -= 1;
            }
            order[j] = i as u8;
            n += 1;
        }
        out.push('{');
        for (i, &m) in order[..n].iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let (k, v) = &self.0[usize::from(m)];
            write_input_str(k, out);
            out.push(':');
            if let Some(v) = v {
                write_input_str(v, out);
            }
        }
        out.push('}');
    }

    /// [`Self::write`] for more members than it sorts on the stack.
    fn write_many(&self, out: &mut String) {
        let mut members: Vec<(&Cow<'_, str>, &Cow<'_, str>)> = self
            .0
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        members.sort_by(|a, b| key_order(a.0, b.0));
        out.push('{');
        for (i, (k, v)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_input_str(k, out);
            out.push(':');
            write_input_str(v, out);
        }
        out.push('}');
    }
}

/// The members of an event, each at most once.
#[derive(Default)]
struct Wire<'a> {
    id: Option<Cow<'a, str>>,
    occurred_at: Option<Cow<'a, str>>,
    action: Option<Cow<'a, str>>,
    resource: Option<Fields<'a>>,
    actor: Option<Fields<'a>>,
    scope: Option<Fields<'a>>,
    details: Option<Json<'a>>,
    context: Option<Fields<'a>>,
    outcome: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn once<T, E: de::Error>(slot: &mut Option<T>, v: Option<T>) -> Result<(), E> {
            // A repeated member is left to the full path (JSON's last-one-wins there).
            if slot.is_some() {
                return Err(E::custom("repeated member"));
            }
            *slot = v;
            Ok(())
        }
        impl<'de> Visitor<'de> for V {
            type Value = Wire<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut w = Wire::default();
                let mut seen = 0u16;
                let text = |v: Option<Str<'de>>| v.map(|s| s.0);
                while let Some(Str(k)) = map.next_key()? {
                    let bit = match k.as_ref() {
                        "id" => 0,
                        "occurred_at" => 1,
                        "action" => 2,
                        "resource" => 3,
                        "actor" => 4,
                        "scope" => 5,
                        "details" => 6,
                        "context" => 7,
                        "outcome" => 8,
                        _ => return Err(de::Error::custom("unknown member")),
                    };
                    if seen & (1 << bit) != 0 {
                        return Err(de::Error::custom("repeated member"));
                    }
                    seen |= 1 << bit;
                    match bit {
                        0 => once(&mut w.id, text(map.next_value()?))?,
                        1 => once(&mut w.occurred_at, text(map.next_value()?))?,
                        2 => once(&mut w.action, text(map.next_value()?))?,
                        3 => once(&mut w.resource, map.next_value()?)?,
                        4 => once(&mut w.actor, map.next_value()?)?,
                        5 => once(&mut w.scope, map.next_value()?)?,
                        6 => {
                            // `details: null` is absent, as on the full path.
                            let v: Json<'de> = map.next_value()?;
                            once(&mut w.details, (!matches!(v, Json::Null)).then_some(v))?
                        }
                        7 => once(&mut w.context, map.next_value()?)?,
                        _ => once(&mut w.outcome, text(map.next_value()?))?,
                    }
                }
                Ok(w)
            }
        }
        d.deserialize_map(V)
    }
}

/// Walks `details` as the full path's scan does: every limit, NULs, and canonical text.
struct Details<'l> {
    limits: &'l super::Limits,
    keys: usize,
    out: String,
}

impl Details<'_> {
    /// Writes `v` canonically; `false` if anything is over a limit or not representable.
    fn write(&mut self, v: &Json<'_>, depth: usize) -> bool {
        if depth > self.limits.max_details_depth {
            return false;
        }
        match v {
            Json::Null => self.out.push_str("null"),
            Json::Bool(true) => self.out.push_str("true"),
            Json::Bool(false) => self.out.push_str("false"),
            Json::U(n) => {
                if *n > MAX_SAFE_INTEGER {
                    return false;
                }
                self.out.push_str(&n.to_string());
            }
            Json::I(n) => {
                if n.unsigned_abs() > MAX_SAFE_INTEGER {
                    return false;
                }
                self.out.push_str(&n.to_string());
            }
            Json::F(f) => {
                let mut buf = ryu_js::Buffer::new();
                self.out.push_str(buf.format_finite(*f));
            }
            Json::Str(s) => {
                if s.contains('\0') || too_long(s, self.limits.max_details_value_len) {
                    return false;
                }
                write_input_str(s, &mut self.out);
            }
            Json::Arr(items) => {
                self.out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    if !self.write(x, depth + 1) {
                        return false;
                    }
                }
                self.out.push(']');
            }
            Json::Obj(members) => {
                self.keys += members.len();
                if self.keys > self.limits.max_details_keys {
                    return false;
                }
                let mut sorted: Vec<&(Cow<'_, str>, Json<'_>)> = members.iter().collect();
                sorted.sort_by(|a, b| key_order(&a.0, &b.0));
                self.out.push('{');
                for (i, (k, x)) in sorted.iter().enumerate() {
                    if i > 0 {
                        if sorted[i - 1].0 == *k {
                            return false;
                        }
                        self.out.push(',');
                    }
                    if k.contains('\0') || too_long(k, self.limits.max_details_key_len) {
                        return false;
                    }
                    write_input_str(k, &mut self.out);
                    self.out.push(':');
                    if !self.write(x, depth + 1) {
                        return false;
                    }
                }
                self.out.push('}');
            }
        }
        true
    }
}

fn too_long(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// A batch body, `{"events": [...]}`, read in one pass: each event straight into its
/// parts and prepared as soon as it is read, so that only one event's parts are alive at
/// a time (not every event's, in a vector grown by doubling, before the first is
/// prepared).
struct Batch<'r, 'a, F> {
    rules: &'r Rules<'a>,
    max_events: usize,
    /// Prepared events to make room for at first (see [`prepare_body`]).
    room: usize,
    new_id: F,
}

/// Why a batch was not taken whole (the caller takes the full path, which says why).
const DECLINED: &str = "not a plain batch";

impl<'de, F: FnMut() -> String> DeserializeSeed<'de> for Batch<'_, '_, F> {
    type Value = Vec<PreparedEvent>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut() -> String> Visitor<'de> for Batch<'_, '_, F> {
    type Value = Vec<PreparedEvent>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{\"events\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(Str(k)) = map.next_key()? else {
            return Err(de::Error::custom(DECLINED));
        };
        if k != "events" {
            return Err(de::Error::custom(DECLINED));
        }
        let events = map.next_value_seed(Events(self))?;
        // Anything after the events (even a second `events`) is the full path's.
        if map.next_key::<Str<'de>>()?.is_some() {
            return Err(de::Error::custom(DECLINED));
        }
        Ok(events)
    }
}

/// The `events` array of a [`Batch`].
struct Events<'r, 'a, F>(Batch<'r, 'a, F>);

impl<'de, F: FnMut() -> String> DeserializeSeed<'de> for Events<'_, '_, F> {
    type Value = Vec<PreparedEvent>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut() -> String> Visitor<'de> for Events<'_, '_, F> {
    type Value = Vec<PreparedEvent>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Batch {
            rules,
            max_events,
            room,
            mut new_id,
        } = self.0;
        let mut out = Vec::with_capacity(room);
        while let Some(w) = seq.next_element::<Wire<'de>>()? {
            if out.len() == max_events {
                return Err(de::Error::custom(DECLINED));
            }
            let ev = prepare_wire(w, rules, &mut new_id);
            out.push(ev.ok_or_else(|| de::Error::custom(DECLINED))?);
        }
        if out.is_empty() {
            return Err(de::Error::custom(DECLINED));
        }
        Ok(out)
    }
}

/// Prepares the events of a request body — one event object, or `{"events": [...]}` with
/// 1 to `max_events` events — as [`super::prepare`] would, or `None` if any of them is
/// anything but a plain valid event (the caller then takes the full path, which explains
/// why). `new_id()` makes the id of each event sent without one, in order.
pub fn prepare_body(
    text: &str,
    rules: &Rules<'_>,
    max_events: usize,
    mut new_id: impl FnMut() -> String,
) -> Option<Vec<PreparedEvent>> {
    if rules.catalog.is_some() {
        return None;
    }
    let batch = Batch {
        rules,
        max_events,
        // Room for an event in every 64 bytes of the body, within the cap: a prepared
        // event is a few hundred bytes, and a vector grown by doubling copies them all
        // again (smaller events make it grow). Room never used is never touched.
        room: max_events.min(text.len() / 64 + 1),
        new_id: &mut new_id,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match batch
        .deserialize(&mut de)
        .and_then(|events| de.end().map(|()| events))
    {
        Ok(events) => Some(events),
        // Not a batch: one event object, or nothing the fast path takes.
        Err(_) => Some(vec![prepare_wire(
            serde_json::from_str::<Wire<'_>>(text).ok()?,
            rules,
            new_id,
        )?]),
    }
}

/// Prepares the event in `text` as [`super::prepare`] would, or `None` if it is anything
/// but a plain valid event (the caller then takes the full path, which explains why).
pub fn prepare(
    text: &str,
    rules: &Rules<'_>,
    new_id: impl FnOnce() -> String,
) -> Option<PreparedEvent> {
    if rules.catalog.is_some() {
        return None;
    }
    prepare_wire(serde_json::from_str(text).ok()?, rules, new_id)
}

fn prepare_wire(
    w: Wire<'_>,
    rules: &Rules<'_>,
    new_id: impl FnOnce() -> String,
) -> Option<PreparedEvent> {
    let action_text = w.action.as_ref()?;
    let action: &str = action_text;
    text_reason(action, 1, MAX_ACTION_LEN).ok()?;
    if let Some(id) = &w.id {
        text_reason(id, 1, MAX_ID_LEN).ok()?;
    }
    let occurred = match &w.occurred_at {
        None => rules.now,
        Some(s) => {
            let t = time::parse_rfc3339(s)?;
            if t > rules.now + rules.limits.max_future {
                return None;
            }
            t
        }
    };
    for (obj, allowed) in [
        (&w.resource, &RESOURCE_FIELDS[..]),
        (&w.scope, &RESOURCE_FIELDS[..]),
        (&w.actor, &ACTOR_FIELDS[..]),
    ] {
        if obj.as_ref().is_some_and(|o| !o.valid(allowed)) {
            return None;
        }
    }
    if let Some(t) = w.actor.as_ref().and_then(|a| a.get("type"))
        && !ACTOR_TYPES.contains(&t)
    {
        return None;
    }
    if let Some(c) = &w.context {
        let fine = c.0.len() <= 16
            && c.0.iter().enumerate().all(|(i, (k, v))| {
                !c.0[..i].iter().any(|(earlier, _)| earlier == k)
                    && v.as_deref().is_some_and(|s| {
                        text_reason(s, 0, MAX_TEXT_LEN).is_ok()
                            && (k != "ip" || s.parse::<std::net::IpAddr>().is_ok())
                    })
            });
        if !fine {
            return None;
        }
    }
    if let Some(o) = &w.outcome
        && !OUTCOMES.contains(&o.as_ref())
    {
        return None;
    }
    let details_text = match &w.details {
        None => None,
        Some(d @ Json::Obj(_)) => {
            let mut scan = Details {
                limits: rules.limits,
                keys: 0,
                out: String::with_capacity(128),
            };
            if !scan.write(d, 1) || scan.out.len() > rules.limits.max_details_bytes {
                return None;
            }
            Some(scan.out)
        }
        Some(_) => return None,
    };

    let id = w.id.as_deref().map_or_else(new_id, str::to_owned);
    let occurred_at = time::format(occurred);
    // Members in canonical order, as the full path writes them.
    let mut head = String::with_capacity(512);
    member(&mut head, "action", |o| write_input_str(action_text, o));
    if let Some(a) = &w.actor {
        member(&mut head, "actor", |o| a.write(o));
    }
    if let Some(c) = &w.context {
        member(&mut head, "context", |o| c.write(o));
    }
    if let Some(d) = &details_text {
        member(&mut head, "details", |o| o.push_str(d));
    }
    member(&mut head, "id", |o| match &w.id {
        Some(sent) => write_input_str(sent, o),
        None => write_string(&id, o),
    });
    // RFC 3339 text (digits, `-`, `:`, `.`, `T`, `Z`): nothing in it to escape.
    member(&mut head, "occurred_at", |o| {
        o.push('"');
        o.push_str(&occurred_at);
        o.push('"');
    });
    member(&mut head, "org_id", |o| write_string(rules.org_id, o));
    if let Some(out) = &w.outcome {
        member(&mut head, "outcome", |o| write_input_str(out, o));
    }
    let mut mid = String::with_capacity(128);
    if let Some(r) = &w.resource {
        mid.push(',');
        member(&mut mid, "resource", |o| r.write(o));
    }
    if let Some(s) = &w.scope {
        mid.push(',');
        member(&mut mid, "scope", |o| s.write(o));
    }
    let field =
        |f: &Option<Fields<'_>>, k: &str| f.as_ref().and_then(|f| f.get(k)).map(str::to_owned);
    let terms = Terms {
        action: action.to_owned(),
        actor_id: field(&w.actor, "id"),
        resource_type: field(&w.resource, "type"),
        resource_id: field(&w.resource, "id"),
        scope_id: field(&w.scope, "id"),
    };
    let mut leaf_prefix = Sha256::new();
    leaf_prefix.update([0u8, b'{']);
    leaf_prefix.update(head.as_bytes());
    Some(PreparedEvent {
        client_id: w.id.map(Cow::into_owned),
        id,
        head,
        mid,
        occurred_us: time::micros(occurred),
        terms,
        leaf_prefix,
        unknown_action: false,
    })
}

#[cfg(test)]
#[path = "event_fast_tests.rs"]
mod tests;
