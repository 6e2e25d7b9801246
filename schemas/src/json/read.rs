//! Reading the topic encoding back: the fast path of every stage's decode.
//!
//! Lines on the topics are what [`super::write_event`] wrote: one flat object, no whitespace,
//! keys in the encoder's order, values that are strings, integers, booleans or string lists.
//! [`read_event`] takes exactly that form and nothing else. Keys are matched by looking ahead
//! from the previous key in the encoder's order (usually the next one or two), strings borrow
//! from the line unless they have escapes, and the line's UTF-8 is checked once. Anything else
//! (whitespace, unknown or repeated keys, a value serde would refuse; other key orders are
//! fine) gives `None`, and [`decode`] hands the line to serde, which accepts any JSON and says
//! what is wrong. So the fast path can only be faster, never more lenient:
//! `tests::fast_path_never_disagrees_with_serde` checks it on mutated lines.

use super::find_special;
use std::borrow::Cow;

/// Every field of the topic encoding in [`super::write_event`]'s order: the model's field name
/// and its JSON key. Calls `$callback!` with `($($args)*) field "key", …`, so the tables below
/// and every [`Fields`] implementation come from this one list.
#[doc(hidden)]
#[macro_export]
macro_rules! topic_fields {
    ($callback:path $(, $args:tt)*) => {
        $callback! { ($($args),*)
            id "id", kind "type", source "source", timestamp "timestamp",
            received_timestamp "receivedTimestamp", tenant "tenant", trace_id "traceId",
            trace_confidence "traceConfidence", trace_link "traceLink",
            trace_candidates "traceCandidates", revision "revision", hostname "hostname",
            host_mac "host.mac", container_id "containerId", container_name "container.name",
            container_image "container.image", cluster "kubernetes.cluster.name",
            namespace "kubernetes.namespace.name", workload_kind "kubernetes.workload.kind",
            workload_name "kubernetes.workload.name", pod "kubernetes.pod.name",
            node "kubernetes.node.name", pod_labels "kubernetes.pod.labels",
            namespace_labels "kubernetes.namespace.labels", enrichment "enrichment",
            comm "comm", cmdline "cmdline", exe "exe", cwd "cwd", pid "pid", ppid "ppid",
            pcomm "pcomm", uid "uid", username "username", user_login_uid "userLoginUid",
            user_login_name "userLoginName", tty "tty", login_shell_id "loginShellId",
            login_shell_distance "loginShellDistance", process_start_time "processStartTime",
            exec_id "execId", parent_exec_id "parentExecId", in_init_tree "inInitTree",
            direction "direction", l4protocol "l4protocol", client_ip "clientIp",
            client_port "clientPort", server_ip "serverIp", server_port "serverPort",
            filename "filename", directory "directory", permissions "permissions",
            verb "verb", resource "resource", sub_resource "subResource", command "command",
            container "container", stdin "stdin", user_name "user.username",
            user_groups "user.groups", user_agent "userAgent",
            source_addresses "sourceAddresses", audit_id "auditId",
            response_code "responseCode", stages_started "stages.started",
            stages_completed "stages.completed"
        }
    };
}

macro_rules! field_table {
    (() $($f:ident $k:literal),*) => {
        /// A field of the topic encoding, named as the model's field.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Field { $($f),* }

        /// Each field with its key, in the encoder's order.
        const FIELDS: &[(Field, &str)] = &[$((Field::$f, $k)),*];

        /// Each key as the encoder writes it, quoted and with its colon.
        const QUOTED: &[&str] = &[$(concat!("\"", $k, "\":")),*];
    };
}
topic_fields!(field_table);

/// Implements [`Fields`] for a struct with every model field (by name), each of a type that
/// is [`FromValue`]: `schemas::impl_fields!('a, EventView<'a>)`.
#[macro_export]
macro_rules! impl_fields {
    ($lt:lifetime, $t:ty) => {
        $crate::topic_fields!($crate::__impl_fields, $lt, $t);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __impl_fields {
    (($lt:lifetime, $t:ty) $($f:ident $k:literal),*) => {
        impl<$lt> $crate::json::Fields<$lt> for $t {
            fn set(&mut self, field: $crate::json::Field, value: $crate::json::Value<$lt>) -> Option<()> {
                match field {
                    $($crate::json::Field::$f => $crate::json::FromValue::assign(&mut self.$f, value)?,)*
                }
                Some(())
            }
        }
    };
}

/// A value of the topic encoding; strings borrow from the line unless they had escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    Big(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Strs(Vec<Cow<'a, str>>),
}

/// A field's type taken from a [`Value`] the way the model's serde derive takes it; `None`
/// where serde would refuse the value (serde then decodes the line and says why).
pub trait FromValue<'a>: Sized {
    fn from_value(v: Value<'a>) -> Option<Self>;

    /// Sets `self` to the value; a type that owns a buffer writes into the one it has.
    fn assign(&mut self, v: Value<'a>) -> Option<()> {
        *self = Self::from_value(v)?;
        Some(())
    }
}

/// A struct [`read_event`] fills field by field (see [`impl_fields!`]).
pub trait Fields<'a> {
    fn set(&mut self, field: Field, value: Value<'a>) -> Option<()>;
}

impl<'a> FromValue<'a> for Cow<'a, str> {
    fn from_value(v: Value<'a>) -> Option<Self> {
        match v {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for String {
    fn from_value(v: Value<'a>) -> Option<Self> {
        Cow::from_value(v).map(Cow::into_owned)
    }

    fn assign(&mut self, v: Value<'a>) -> Option<()> {
        let s = Cow::from_value(v)?;
        self.clear();
        self.push_str(&s);
        Some(())
    }
}

impl<'a> FromValue<'a> for Vec<Cow<'a, str>> {
    fn from_value(v: Value<'a>) -> Option<Self> {
        match v {
            Value::Strs(s) => Some(s),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for Vec<String> {
    fn from_value(v: Value<'a>) -> Option<Self> {
        Vec::<Cow<'a, str>>::from_value(v).map(|l| l.into_iter().map(Cow::into_owned).collect())
    }
}

impl FromValue<'_> for i64 {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }
}

impl FromValue<'_> for u64 {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Big(n) => Some(n),
            v => u64::try_from(i64::from_value(v)?).ok(),
        }
    }
}

impl FromValue<'_> for Option<i64> {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => i64::from_value(v).map(Some),
        }
    }
}

impl FromValue<'_> for f32 {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Int(n) => Some(n as f32),
            Value::Big(n) => Some(n as f32),
            Value::Float(f) if f.is_finite() => Some(f as f32),
            _ => None,
        }
    }
}

/// Flags ([`crate::event::opt_flag`]): `true`/`false`, `1`/`0`, or `null` for unknown.
impl FromValue<'_> for Option<bool> {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            Value::Bool(b) => Some(Some(b)),
            Value::Int(0) => Some(Some(false)),
            Value::Int(1) => Some(Some(true)),
            _ => None,
        }
    }
}

/// Flags ([`crate::event::flag`]): as `Option<bool>`, unknown being `false`.
impl FromValue<'_> for bool {
    fn from_value(v: Value<'_>) -> Option<Self> {
        Option::<bool>::from_value(v).map(|b| b.unwrap_or(false))
    }
}

impl FromValue<'_> for crate::ActivityType {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Str(s) => crate::ActivityType::parse(&s),
            _ => None,
        }
    }
}

impl FromValue<'_> for crate::Source {
    fn from_value(v: Value<'_>) -> Option<Self> {
        use crate::Source;
        match v {
            Value::Str(s) => [
                Source::K8sAudit,
                Source::Falco,
                Source::Tetragon,
                Source::Native,
            ]
            .into_iter()
            .find(|k| k.as_str() == s),
            _ => None,
        }
    }
}

impl_fields!('a, crate::ActivityEvent);

/// A field's type back to its default, keeping the buffer it owns.
trait Clear {
    fn clear(&mut self);
}

impl Clear for String {
    fn clear(&mut self) {
        String::clear(self)
    }
}

impl<T> Clear for Vec<T> {
    fn clear(&mut self) {
        Vec::clear(self)
    }
}

macro_rules! clear_by_default {
    ($($t:ty),*) => {$(
        impl Clear for $t {
            fn clear(&mut self) {
                *self = <$t>::default();
            }
        }
    )*};
}
clear_by_default!(
    i64,
    u64,
    u16,
    f32,
    bool,
    Option<i64>,
    Option<bool>,
    crate::ActivityType,
    crate::Source
);

macro_rules! impl_clear {
    (() $($f:ident $k:literal),*) => {
        impl crate::ActivityEvent {
            /// Makes the event equal to `ActivityEvent::default()` but keeps its strings'
            /// buffers: a stage decodes the next chunk's events into the last chunk's spent ones
            /// ([`decode_into`]), so decoding a field copies bytes without allocating.
            pub fn clear(&mut self) {
                $(Clear::clear(&mut self.$f);)*
            }
        }
    };
}
topic_fields!(impl_clear);

/// Decodes one line of the topic encoding: the encoder's own form by [`read_event`], any
/// other line by serde (sonic-rs), which accepts any JSON and says what is wrong with a bad one.
pub fn decode<'a, T>(line: &'a [u8]) -> Result<T, String>
where
    T: Fields<'a> + Default + serde::Deserialize<'a>,
{
    let mut out = T::default();
    decode_into(line, &mut out).map(|()| out)
}

/// [`decode`] into `out`, which must equal `T::default()` (a slot of the caller's vector: a
/// large `T` is not moved; a cleared one keeps its buffers, see [`FromValue::assign`]). On
/// an error `out` holds a partly decoded value.
pub fn decode_into<'a, T>(line: &'a [u8], out: &mut T) -> Result<(), String>
where
    T: Fields<'a> + serde::Deserialize<'a>,
{
    if read_event_into(line, out).is_some() {
        return Ok(());
    }
    *out = sonic_rs::from_slice(line).map_err(|e| e.to_string())?;
    Ok(())
}

/// Decodes one line of the topic encoding into a `T` (starting from its default), or `None`
/// when the line is not in the form the encoder writes: decode it with serde then.
pub fn read_event<'a, T: Fields<'a> + Default>(line: &'a [u8]) -> Option<T> {
    let mut out = T::default();
    read_event_into(line, &mut out).map(|()| out)
}

/// [`read_event`] into `out`, which must be `T::default()`; on `None` it holds a partly
/// decoded value.
fn read_event_into<'a, T: Fields<'a>>(line: &'a [u8], out: &mut T) -> Option<()> {
    read_fields(std::str::from_utf8(line).ok()?, |i, r| {
        out.set(FIELDS[i].0, r.value()?)
    })
    .map(|_| ())
}

/// Walks the object of a line in the encoder's form, handing each key (its index in
/// [`FIELDS`]) to `read`, which reads the value. Returns the keys seen (bit `i` for
/// `FIELDS[i]`); `None` as [`read_event`] describes.
fn read_fields<'a>(
    text: &'a str,
    mut read: impl FnMut(usize, &mut Reader<'a>) -> Option<()>,
) -> Option<u128> {
    let mut r = Reader { text, pos: 0 };
    let mut seen = 0u128;
    r.eat(b'{')?;
    if r.peek() == Some(b'}') {
        r.pos += 1;
    } else {
        let mut next = 0;
        loop {
            let i = r.key(next)?;
            next = i + 1;
            if seen & (1 << i) != 0 {
                return None;
            }
            seen |= 1 << i;
            read(i, &mut r)?;
            match r.byte()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    (r.pos == text.len()).then_some(seen)
}

/// A field's value located in its line but not converted (offsets into the line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    Big(u64),
    Float(f64),
    /// A string without escapes: `line[start..end]`.
    Str(u32, u32),
    /// A string with escapes, its opening quote at `line[start]`.
    Escaped(u32),
    /// A list of `n` strings, its `[` at `line[start]`.
    List {
        start: u32,
        n: u32,
    },
}

/// One line of the topic encoding read into where each field's value is, for a consumer
/// that converts the fields itself, in its own order (the writer writes RowBinary columns
/// straight from it). Reusable from line to line; strictness is [`read_event`]'s, and
/// [`RawEvent::value`] gives each field as [`read_event`] would.
pub struct RawEvent<'a> {
    text: &'a str,
    seen: u128,
    raw: [Raw; FIELDS.len()],
}

impl Default for RawEvent<'_> {
    fn default() -> Self {
        RawEvent {
            text: "",
            seen: 0,
            raw: [Raw::Null; FIELDS.len()],
        }
    }
}

impl<'a> RawEvent<'a> {
    /// Reads `line`, replacing the previous one; `None` when [`read_event`] would refuse it
    /// (decode it with [`decode`] then).
    pub fn read(&mut self, line: &'a [u8]) -> Option<()> {
        self.text = std::str::from_utf8(line).ok()?;
        let raw = &mut self.raw;
        let seen = read_fields(self.text, |i, r| {
            raw[i] = r.raw()?;
            Some(())
        });
        // Nothing of a refused line is read as present.
        self.seen = seen.unwrap_or(0);
        seen.map(|_| ())
    }

    /// The field's value, `None` when the line does not have it.
    pub fn get(&self, field: Field) -> Option<Raw> {
        let i = field as usize;
        (self.seen & (1 << i) != 0).then(|| self.raw[i])
    }

    /// The text of a string without escapes.
    pub fn text(&self, start: u32, end: u32) -> &'a str {
        &self.text[start as usize..end as usize]
    }

    /// The field as [`read_event`] hands it to [`Fields::set`]; `None` when absent.
    pub fn value(&self, field: Field) -> Option<Value<'a>> {
        Some(match self.get(field)? {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(b),
            Raw::Int(n) => Value::Int(n),
            Raw::Big(n) => Value::Big(n),
            Raw::Float(f) => Value::Float(f),
            Raw::Str(a, b) => Value::Str(Cow::Borrowed(self.text(a, b))),
            Raw::Escaped(start) => Value::Str(self.reader(start).string()?),
            Raw::List { start, .. } => {
                let mut list = Vec::new();
                self.strings(start, |s| list.push(s))?;
                Value::Strs(list)
            }
        })
    }

    /// Each string of the list whose `[` is at `start` ([`Raw::List`]) in turn.
    pub fn strings(&self, start: u32, each: impl FnMut(Cow<'a, str>)) -> Option<()> {
        self.reader(start).list(each)
    }

    fn reader(&self, at: u32) -> Reader<'a> {
        Reader {
            text: self.text,
            pos: at as usize,
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

/// Test support for decoders here and in other crates: applies property-test edits to a line,
/// each `(position, byte, op)` replacing (op 0), inserting (1) or removing (2) a byte.
#[doc(hidden)]
pub fn mutate(line: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
    for &(at, byte, op) in edits {
        let at = at % (line.len() + 1);
        match op {
            0 if at < line.len() => line[at] = byte,
            1 => line.insert(at, byte),
            _ if at < line.len() => {
                line.remove(at);
            }
            _ => {}
        }
    }
}

/// `s.starts_with(p)` for short `p` (a key), in word compares rather than a `memcmp` call:
/// a line has dozens of keys, and the call was 6 % of decoding.
#[inline(always)]
fn has_prefix(s: &[u8], p: &[u8]) -> bool {
    let n = p.len();
    let Some(s) = s.get(..n) else {
        return false;
    };
    if n >= 8 {
        let word = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        let mut at = 0;
        while at + 8 < n {
            if word(s, at) != word(p, at) {
                return false;
            }
            at += 8;
        }
        // The last (possibly overlapping) word.
        word(s, n - 8) == word(p, n - 8)
    } else if n >= 4 {
        let word = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        word(s, 0) == word(p, 0) && word(s, n - 4) == word(p, n - 4)
    } else {
        s == p
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    let mut n = 0;
    for &d in digits {
        n = n * 16 + (d as char).to_digit(16)?;
    }
    Some(n)
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.byte()? == want).then_some(())
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes().get(self.pos..end)? == word.as_bytes()).then(|| self.pos = end)
    }

    /// A key and its colon, as the key's index in [`FIELDS`]. Keys come in the encoder's order
    /// with some omitted: usually one of the next few after the previous key (`next`).
    fn key(&mut self, next: usize) -> Option<usize> {
        let rest = &self.bytes()[self.pos..];
        if let Some(i) = (next..FIELDS.len()).find(|&i| has_prefix(rest, QUOTED[i].as_bytes())) {
            self.pos += QUOTED[i].len();
            return Some(i);
        }
        let i = self.any_key()?;
        self.eat(b':')?;
        Some(i)
    }

    /// A key (without escapes) in any order, as its index in [`FIELDS`].
    fn any_key(&mut self) -> Option<usize> {
        self.eat(b'"')?;
        let b = self.bytes();
        let start = self.pos;
        let end = start + b[start..].iter().position(|&c| c == b'"')?;
        let key = &b[start..end];
        self.pos = end + 1;
        FIELDS.iter().position(|(_, k)| k.as_bytes() == key)
    }

    fn value(&mut self) -> Option<Value<'a>> {
        Some(match self.peek()? {
            b'"' => Value::Str(self.string()?),
            b'[' => {
                let mut list = Vec::new();
                self.list(|s| list.push(s))?;
                Value::Strs(list)
            }
            b't' => self.literal("true").map(|()| Value::Bool(true))?,
            b'f' => self.literal("false").map(|()| Value::Bool(false))?,
            b'n' => self.literal("null").map(|()| Value::Null)?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        })
    }

    /// A list of strings, each handed to `each`.
    fn list(&mut self, mut each: impl FnMut(Cow<'a, str>)) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            each(self.string()?);
            match self.byte()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A value located rather than converted (strings and lists are checked all the same).
    fn raw(&mut self) -> Option<Raw> {
        let start = self.pos as u32;
        Some(match self.peek()? {
            b'"' => match self.string()? {
                Cow::Borrowed(_) => Raw::Str(start + 1, self.pos as u32 - 1),
                Cow::Owned(_) => Raw::Escaped(start),
            },
            b'[' => {
                let mut n = 0;
                self.list(|_| n += 1)?;
                Raw::List { start, n }
            }
            _ => match self.value()? {
                Value::Null => Raw::Null,
                Value::Bool(b) => Raw::Bool(b),
                Value::Int(n) => Raw::Int(n),
                Value::Big(n) => Raw::Big(n),
                Value::Float(f) => Raw::Float(f),
                Value::Str(_) | Value::Strs(_) => return None,
            },
        })
    }

    /// A JSON number: an `Int` when it has no fraction or exponent and fits an i64 (`Big` when
    /// only a u64 holds it).
    fn number(&mut self) -> Option<Value<'a>> {
        let b = self.bytes();
        let start = self.pos;
        let negative = b[start] == b'-';
        let int_start = start + negative as usize;
        // Integer digits, accumulated as they are scanned (19 digits cannot overflow a u64).
        let mut v: u64 = 0;
        let mut end = int_start;
        while let Some(&d) = b.get(end).filter(|d| d.is_ascii_digit()) {
            v = v.wrapping_mul(10).wrapping_add((d - b'0') as u64);
            end += 1;
        }
        let n = end - int_start;
        if n == 0 || (n > 1 && b[int_start] == b'0') {
            return None;
        }
        self.pos = end;
        if !matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            if n > 19 {
                // Past 19 digits the running value may have wrapped: again, checked.
                v = b[int_start..end].iter().try_fold(0u64, |v, &d| {
                    v.checked_mul(10)?.checked_add((d - b'0') as u64)
                })?;
            }
            return Some(if negative {
                // serde reads `-0` as a float (which an integer field refuses): its call.
                if v == 0 {
                    return None;
                }
                Value::Int(0i64.checked_sub_unsigned(v)?)
            } else {
                i64::try_from(v).map_or(Value::Big(v), Value::Int)
            });
        }
        let digits = |r: &mut Self| {
            let from = r.pos;
            while r.peek().is_some_and(|c| c.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos - from
        };
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        self.text[start..self.pos].parse().ok().map(Value::Float)
    }

    /// A string: borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let (text, b) = (self.text, self.bytes());
        let start = self.pos;
        let mut at = find_special(b, start)?;
        if b[at] == b'"' {
            self.pos = at + 1;
            return Some(Cow::Borrowed(text.get(start..at)?));
        }
        let mut s = String::with_capacity(at - start + 16);
        s.push_str(text.get(start..at)?);
        loop {
            match b[at] {
                b'"' => {
                    self.pos = at + 1;
                    return Some(Cow::Owned(s));
                }
                b'\\' => {
                    let (c, len) = match *b.get(at + 1)? {
                        b'"' => ('"', 2),
                        b'\\' => ('\\', 2),
                        b'/' => ('/', 2),
                        b'b' => ('\u{8}', 2),
                        b'f' => ('\u{c}', 2),
                        b'n' => ('\n', 2),
                        b'r' => ('\r', 2),
                        b't' => ('\t', 2),
                        b'u' => {
                            let hi = hex4(b, at + 2)?;
                            if (0xD800..0xDC00).contains(&hi) {
                                // A surrogate pair; a lone surrogate is left to serde.
                                if b.get(at + 6..at + 8)? != b"\\u" {
                                    return None;
                                }
                                let lo = hex4(b, at + 8)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                (
                                    char::from_u32(
                                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00),
                                    )?,
                                    12,
                                )
                            } else {
                                (char::from_u32(hi)?, 6)
                            }
                        }
                        _ => return None,
                    };
                    s.push(c);
                    let from = at + len;
                    at = find_special(b, from)?;
                    s.push_str(text.get(from..at)?);
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityEvent;

    fn serde(line: &[u8]) -> Result<ActivityEvent, String> {
        sonic_rs::from_slice(line).map_err(|e| e.to_string())
    }

    #[test]
    fn has_prefix_is_starts_with() {
        let text = b"\"kubernetes.namespace.name\":\"x\"";
        for n in 0..text.len() {
            for m in 0..=n {
                let (s, p) = (&text[..n], &text[..m]);
                assert!(has_prefix(s, p), "{s:?} {p:?}");
                for i in 0..m {
                    let mut q = p.to_vec();
                    q[i] ^= 1;
                    assert!(!has_prefix(s, &q), "{s:?} {q:?}");
                }
            }
            assert!(!has_prefix(&text[..n], &text[..n + 1]));
        }
    }

    #[test]
    fn fields_cover_the_model_in_encoder_order() {
        // Every key the encoder can write, in its order: an event with every field set.
        let e: ActivityEvent = serde(
            br#"{"id":"i","type":"kubernetes","source":"falco","timestamp":1700000000000000000,"receivedTimestamp":2,"tenant":"t","traceId":"tr","traceConfidence":0.5,"traceLink":"l","traceCandidates":["a","b"],"revision":3,"hostname":"h","host.mac":"m","containerId":"c","container.name":"cn","container.image":"ci","kubernetes.cluster.name":"k","kubernetes.namespace.name":"n","kubernetes.workload.kind":"Deployment","kubernetes.workload.name":"w","kubernetes.pod.name":"p","kubernetes.node.name":"no","kubernetes.pod.labels":["a=b"],"kubernetes.namespace.labels":["c=d"],"enrichment":"api","comm":"c","cmdline":"a b","exe":"e","cwd":"/","pid":3,"ppid":2,"pcomm":"pc","uid":0,"username":"u","userLoginUid":-1,"userLoginName":"l","tty":34816,"loginShellId":9,"loginShellDistance":0,"processStartTime":5,"execId":"ex","parentExecId":"pe","inInitTree":false,"direction":"out","l4protocol":"tcp","clientIp":"1.2.3.4","clientPort":1234,"serverIp":"5.6.7.8","serverPort":443,"filename":"/etc/x","directory":"/etc","permissions":"rw","verb":"get","resource":"pods","subResource":"exec","command":"bash -il","container":"app","stdin":true,"user.username":"alice","user.groups":["g"],"userAgent":"kubectl","sourceAddresses":["10.0.0.1"],"auditId":"a1","responseCode":101,"stages.started":1,"stages.completed":2}"#,
        )
        .unwrap();
        let mut line = Vec::new();
        super::super::write_event(&mut line, &e);
        use sonic_rs::JsonContainerTrait;
        let keys: Vec<String> = sonic_rs::from_slice::<sonic_rs::Value>(&line)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        let ours: Vec<&str> = FIELDS.iter().map(|(_, k)| *k).collect();
        assert_eq!(keys, ours);
        assert_eq!(read_event::<ActivityEvent>(&line), Some(e.clone()));

        // A spent event, cleared, is the default one with its buffers; a line decoded into it
        // is the line's event, and a shorter line leaves nothing of the longer one behind.
        let mut spent = e.clone();
        spent.clear();
        assert_eq!(spent, ActivityEvent::default());
        assert!(spent.cmdline.capacity() >= "a b".len());
        decode_into(&line, &mut spent).unwrap();
        assert_eq!(spent, e);
        let short = br#"{"id":"j","type":"command","source":"native","timestamp":1700000000000000001,"comm":"sh"}"#;
        spent.clear();
        decode_into(short, &mut spent).unwrap();
        assert_eq!(spent, serde(short).unwrap());
    }

    #[test]
    fn strings_borrow_unless_escaped_and_unescape_like_serde() {
        #[derive(Default)]
        struct Comm<'a>(Option<Cow<'a, str>>);
        impl<'a> Fields<'a> for Comm<'a> {
            fn set(&mut self, field: Field, value: Value<'a>) -> Option<()> {
                if field == Field::comm {
                    self.0 = Some(Cow::from_value(value)?);
                }
                Some(())
            }
        }
        let plain = br#"{"type":"command","comm":"bash"}"#;
        assert!(matches!(
            read_event::<Comm>(plain).unwrap().0,
            Some(Cow::Borrowed("bash"))
        ));
        for text in [
            r#"a\"b\\c\/d\b\f\n\r\te"#,
            r#"\u00e9\u0001x\ud83d\ude00y"#,
            r#"é😀\u20ac"#,
            r#"\\"#,
        ] {
            let line = format!(r#"{{"type":"command","comm":"{text}"}}"#);
            let got = read_event::<ActivityEvent>(line.as_bytes()).expect(&line);
            assert_eq!(Ok(got), serde(line.as_bytes()), "{line}");
        }
        for bad in [
            "{\"comm\":\"a\u{1}b\"}",
            r#"{"comm":"\ud800"}"#,
            r#"{"comm":"\x"}"#,
            r#"{"comm":"abc"#,
        ] {
            assert_eq!(read_event::<ActivityEvent>(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn numbers_and_flags_as_serde_takes_them() {
        for ok in [
            r#"{"pid":-9223372036854775808,"ppid":9223372036854775807}"#,
            r#"{"revision":0,"traceConfidence":1}"#,
            r#"{"revision":18446744073709551615,"traceConfidence":18446744073709551615}"#,
            r#"{"traceConfidence":0.25,"uid":null,"inInitTree":1,"stdin":0}"#,
            r#"{"traceConfidence":-1.5e-3,"inInitTree":null,"stdin":null}"#,
            r#"{}"#,
            r#"{"pid":3,"comm":"sh","type":"command","id":"x"}"#,
        ] {
            let got = read_event::<ActivityEvent>(ok.as_bytes()).expect(ok);
            assert_eq!(Ok(got), serde(ok.as_bytes()), "{ok}");
        }
        for refused in [
            r#"{"pid":1.0}"#,
            r#"{"pid":01}"#,
            r#"{"pid":-0}"#,
            r#"{"pid":-}"#,
            r#"{"pid":9223372036854775808}"#,
            r#"{"revision":18446744073709551616}"#,
            r#"{"revision":99999999999999999999}"#,
            r#"{"revision":-1}"#,
            r#"{"stdin":2}"#,
            r#"{"comm":null}"#,
            r#"{"pid":1,"pid":2}"#,
            r#"{"bogus":1}"#,
            r#"{"type":"other"}"#,
            r#" {}"#,
            r#"{} "#,
            r#"{"pid" :1}"#,
        ] {
            assert_eq!(
                read_event::<ActivityEvent>(refused.as_bytes()),
                None,
                "{refused}"
            );
        }
    }

    proptest::proptest! {
        /// Mutations of a real line (bytes replaced, inserted or removed): when the fast path
        /// takes the result, serde takes it too and decodes the same event.
        #[test]
        fn fast_path_never_disagrees_with_serde(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), 0..3u8), 1..4),
        ) {
            let mut line = br#"{"id":"x","type":"connection","source":"falco","timestamp":1700000000000000000,"traceConfidence":0.5,"traceCandidates":["a","b\"c"],"comm":"c\"q","cmdline":"a\nb\u00e9","pid":3,"uid":0,"tty":null,"inInitTree":false,"clientPort":1234,"stdin":true,"user.groups":[]}"#.to_vec();
            mutate(&mut line, &edits);
            if let Some(fast) = read_event::<ActivityEvent>(&line) {
                proptest::prop_assert_eq!(Ok(fast), serde(&line));
            }
        }
    }
}
