//! The Lua scripts, run with `EVALSHA` (reloaded on `NOSCRIPT` by [`redis::Script`]).
//!
//! # Exact arithmetic
//!
//! The scripts implement [`tailwater_core::rate::gcra::step`] exactly, in integer
//! nanoseconds. Lua 5.1 numbers are doubles, exact below 2^53, but a TAT in nanoseconds
//! since the Unix epoch is about 2^60. So every absolute time is kept as two exact limbs
//! (seconds, nanoseconds) and the GCRA runs on `r = max(stored, now) - now`, which is at
//! most the tolerance `DVT = burst · T`. The store refuses quotas with `DVT > 2^55` ns
//! (about 417 days). Up to `DVT <= 2^52` ns, `r + n · T <= 2 · DVT <= 2^53`: every
//! intermediate value is an exact integer. Above (a `year`), the quota's `T` is rounded up
//! to a multiple of 8 ns (`call::redis_quota`) and `now` is a multiple of 8 ns (Redis
//! `TIME` is in microseconds; a caller-given `now` is rounded down): every time is then
//! `8 · m` with `m <= 2^53`, which a double holds exactly, and sums and differences of
//! such values are exact too. Floor divisions are corrected after the floating-point
//! division; the `PEXPIRE` ceiling is taken the same way (`r + 999999` would not be exact).
//!
//! In relative form, [`gcra::step`](tailwater_core::rate::gcra::step) reads:
//!
//! ```text
//! r       = max(stored - now, 0)
//! n > burst          -> denied (ExceedsBurst), nothing written
//! r + n*T > DVT      -> denied (RateExceeded), nothing written
//! otherwise          -> allowed, stored := now + r + n*T   (n == 0: nothing written)
//! ```
//!
//! The stored value of a key is the TAT in decimal nanoseconds since the Unix epoch: the
//! same `u64` state that `gcra::step` takes. Keys get `PEXPIRE` = time until the TAT
//! (rounded up to a millisecond): after that the state carries no information.
//!
//! `now` comes from Redis `TIME` (microseconds, times 1000), so client clocks do not
//! matter. Redis 7 replicates script effects, which is what allows `TIME` before writes.
//! Tests pass `now` explicitly (`ARGV[2]`, empty = use `TIME`) to compare against Rust.

use std::sync::LazyLock;

/// Shared Lua helpers: two-limb time, exact floor division, one batch call's decision, reading
/// the keys and answering with their states before the step.
const PRELUDE: &str = r#"
local E9 = 1000000000
local function fdiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
-- decimal u64 nanoseconds -> seconds, nanoseconds
local function split(v)
  if v == nil or v == false or v == '' then return 0, 0 end
  local len = string.len(v)
  if len <= 9 then return 0, tonumber(v) end
  return tonumber(string.sub(v, 1, len - 9)), tonumber(string.sub(v, len - 8))
end
local function join(s, ns)
  if s == 0 then return string.format('%d', ns) end
  return string.format('%d%09d', s, ns)
end
local now_s, now_ns
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now_s = tonumber(t[1])
  now_ns = tonumber(t[2]) * 1000
else
  now_s, now_ns = split(ARGV[2])
end
-- r = max(stored - now, 0) for a stored value v
local function relv(v)
  local s, ns = split(v)
  local r = (s - now_s) * E9 + (ns - now_ns)
  if r < 0 then r = 0 end
  return r
end
local function rel(k) return relv(redis.call('GET', k)) end
-- stores now + r (r > 0) with a PEXPIRE of ceil(r / 1 ms)
local function store(k, r)
  local total = now_ns + r
  local carry = fdiv(total, E9)
  local ms = fdiv(r, 1000000)
  if ms * 1000000 < r then ms = ms + 1 end
  if ms < 1 then ms = 1 end
  -- With a caller-given `now` (tests), real time and script time differ: keep keys for a
  -- minute longer so that they cannot expire in real time while the test still uses them.
  if ARGV[2] ~= '' then ms = ms + 60000 end
  redis.call('SET', k, join(now_s + carry, total - carry * E9), 'PX', ms)
end
-- One call of a batch (`tailwater_core::rate::step_batch`): steps its `ni` items, read from
-- ARGV[a ..] as slot, T, DVT, burst, n, class (0 enforce, 1 shadow, 2 quota), in order on
-- `scratch` (items of one slot see each other's charges). Returns whether the call commits
-- (no enforce item denied, and some quota item admitted if it has any) and the index of the
-- argument after its items.
local function decide(scratch, a, ni)
  local enforce_denied = false
  local qi, qd = 0, 0
  for i = 1, ni do
    local s = tonumber(ARGV[a])
    local T = tonumber(ARGV[a + 1])
    local dvt = tonumber(ARGV[a + 2])
    local burst = tonumber(ARGV[a + 3])
    local n = tonumber(ARGV[a + 4])
    local class = tonumber(ARGV[a + 5])
    a = a + 6
    local ok = n <= burst and scratch[s] + n * T <= dvt
    if ok then scratch[s] = scratch[s] + n * T end
    if class == 0 and not ok then enforce_denied = true end
    if class == 2 then
      qi = qi + 1
      if not ok then qd = qd + 1 end
    end
  end
  return not enforce_denied and (qi == 0 or qd < qi), a
end
-- Reads every key: its stored value as sent back to the caller (`before`, '' for a missing
-- key) and `r = max(stored - now, 0)`.
local function read_keys()
  local before, r = {}, {}
  for i = 1, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if v then before[i] = v else before[i] = '' end
    r[i] = relv(v)
  end
  return before, r
end
-- The answer of a script that stepped the keys' states: {flag, now, before_1, ...}.
local function answer(flag, before)
  local out = {flag, join(now_s, now_ns)}
  for i = 1, #before do out[i + 2] = before[i] end
  return out
end
"#;

/// Atomic multi-quota GCRA.
///
/// `KEYS[i]`: state of quota `i`. `ARGV[1]`: n. `ARGV[2]`: now in ns, or `''` for `TIME`.
/// `ARGV[3 + 3(i-1) ..]`: `T`, `DVT`, `burst` of quota `i`.
/// Returns `{allowed (0/1), now (decimal ns), stored_1, ..., stored_k}` where `stored_i`
/// is the state *before* the step (`''` for a missing key): the caller recomputes the
/// decision with `gcra::step_all` from exactly these inputs.
const GCRA_BODY: &str = r#"
local n = tonumber(ARGV[1])
local k = #KEYS
local before, rs = read_keys()
local ok = 1
for i = 1, k do
  local T = tonumber(ARGV[3 * i])
  local dvt = tonumber(ARGV[3 * i + 1])
  local burst = tonumber(ARGV[3 * i + 2])
  if n > burst or rs[i] + n * T > dvt then ok = 0 end
end
if ok == 1 and n > 0 then
  for i = 1, k do
    store(KEYS[i], rs[i] + n * tonumber(ARGV[3 * i]))
  end
end
return answer(ok, before)
"#;

/// Lease: take up to `want` cells from every quota at once (the same count from each).
///
/// `ARGV[1]`: want (> 0 to take, < 0 to give `-want` cells back). `ARGV[2]`: now or `''`.
/// `ARGV[3 + 3(i-1) ..]`: `T`, `DVT`, `burst`.
/// Returns `{granted, now, wait_one, wait_full}`: `granted` is the largest `g <= want`
/// that `gcra::step(q, now, stored, g)` admits for every quota (the state is then charged
/// with `g` cells, exactly as that step would); after the debit, `wait_one` is the time
/// until one more cell fits and `wait_full` the time until `want` cells fit (0 if now).
/// Giving back moves each TAT back by `cells · T`, never before `now`.
const LEASE_BODY: &str = r#"
local want = tonumber(ARGV[1])
local k = #KEYS
if want < 0 then
  for i = 1, k do
    local r = rel(KEYS[i]) + want * tonumber(ARGV[3 * i])
    if r > 0 then
      store(KEYS[i], r)
    else
      redis.call('DEL', KEYS[i])
    end
  end
  return {0, join(now_s, now_ns), 0, 0}
end
local g = want
local rs = {}
for i = 1, k do
  local T = tonumber(ARGV[3 * i])
  local dvt = tonumber(ARGV[3 * i + 1])
  local burst = tonumber(ARGV[3 * i + 2])
  local r = rel(KEYS[i])
  rs[i] = r
  local fit = 0
  if dvt > r then fit = fdiv(dvt - r, T) end
  if fit > burst then fit = burst end
  if fit < g then g = fit end
end
-- After the debit: how long until one cell, and until a whole `want`, fit again.
local wait_one = 0
local wait_full = 0
for i = 1, k do
  local T = tonumber(ARGV[3 * i])
  local dvt = tonumber(ARGV[3 * i + 1])
  local r = rs[i] + g * T
  if g > 0 then store(KEYS[i], r) end
  local w1 = r + T - dvt
  if w1 > wait_one then wait_one = w1 end
  local wf = r + want * T - dvt
  if wf > wait_full then wait_full = wf end
end
return {g, join(now_s, now_ns), wait_one, wait_full}
"#;

/// Atomic batch: several keys, each with its own quota and `n`, decided all or nothing
/// (`tailwater_core::rate::step_batch` exactly).
///
/// `KEYS[s]`: state of slot `s`. `ARGV[1]`: unused (`''`). `ARGV[2]`: now in ns, or `''`.
/// `ARGV[3 + 6(i-1) ..]`: slot (1-based), `T`, `DVT`, `burst`, `n`, class (0 enforce,
/// 1 shadow, 2 quota) of item `i`. Items are stepped in order on scratch state (items of one
/// slot see each other's charges); the batch is denied when an enforce item denies or
/// every quota item denies; only when it is admitted are the slots charged.
/// Returns `{committed (0/1), now (decimal ns), stored_1, ..., stored_s}` (state before).
const BATCH_BODY: &str = r#"
local nslots = #KEYS
local before, r = read_keys()
local scratch = {}
for s = 1, nslots do scratch[s] = r[s] end
local commits = decide(scratch, 3, (#ARGV - 2) / 6)
local commit = 0
if commits then
  commit = 1
  for s = 1, nslots do
    if scratch[s] > r[s] then store(KEYS[s], scratch[s]) end
  end
end
return answer(commit, before)
"#;

/// The atomic GCRA script.
pub(crate) static GCRA: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{GCRA_BODY}")));

/// The lease (take / give back) script.
pub(crate) static LEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{LEASE_BODY}")));

/// Parses a decimal `u64` of nanoseconds as returned by the scripts (`''` is 0).
pub(crate) fn parse_nanos(s: &str) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    s.parse().ok()
}

/// The atomic batch script.
pub(crate) static BATCH: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{BATCH_BODY}")));

/// Group commit: the calls that queued while the previous script was in flight, decided by
/// one script, each call atomically on its own keys exactly as [`BATCH_BODY`] decides one
/// (`tailwater_core::rate::step_batch`: denied hits never charged, nothing charged unless
/// the call is admitted). Calls are decided in order, each on the state its predecessors
/// left, so the result is that of running the calls one after another at the same `now`.
///
/// A key is read (`GET`) once per script, kept as `r = max(stored - now, 0)` while the
/// calls run, and written (`SET … PX`) once at the end if some call charged it: a hot key
/// shared by every call of the group costs one read and one write, not one per call.
///
/// `KEYS`: the keys of call 1, then those of call 2, …. `ARGV[1]`: unused (`''`).
/// `ARGV[2]`: now in ns, or `''` for `TIME`. Then per call: `nkeys`, `nitems`, and
/// `nitems` times slot (1-based within the call), `T`, `DVT`, `burst`, `n`, class.
/// Returns `{now (decimal ns), then per call: committed (0/1), r_1, ..., r_nkeys}` where
/// `r_s` is the slot's state *before* the call as an offset from `now` (the caller
/// recomputes each decision with `step_batch` on `now + r_s`, which is what the call saw:
/// the GCRA treats every stored TAT before `now` as `now`).
const GROUP_BODY: &str = r#"
local state = {}
local dirty = {}
local out = {join(now_s, now_ns)}
local a = 3
local kbase = 0
local nargs = #ARGV
while a <= nargs do
  local nk = tonumber(ARGV[a])
  local ni = tonumber(ARGV[a + 1])
  a = a + 2
  local r = {}
  local scratch = {}
  for s = 1, nk do
    local k = KEYS[kbase + s]
    local v = state[k]
    if v == nil then
      v = rel(k)
      state[k] = v
    end
    r[s] = v
    scratch[s] = v
  end
  local commits
  commits, a = decide(scratch, a, ni)
  local commit = 0
  if commits then
    commit = 1
    for s = 1, nk do
      if scratch[s] > r[s] then
        local k = KEYS[kbase + s]
        state[k] = scratch[s]
        dirty[k] = true
      end
    end
  end
  out[#out + 1] = commit
  for s = 1, nk do out[#out + 1] = r[s] end
  kbase = kbase + nk
end
for k, _ in pairs(dirty) do store(k, state[k]) end
return out
"#;

/// The group commit script.
pub(crate) static GROUP: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{PRELUDE}{GROUP_BODY}")));
