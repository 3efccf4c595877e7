/// What the correlator remembers about one socket between its events.
struct SocketState: Equatable, Sendable {
    /// A connect event the first request on this socket has not yet taken.
    var connectNs: UInt64 = 0
    var synRetransmits: UInt32 = 0
    var hasConnect = false
    /// Requests seen so far, for generated IDs ("sk-<cookie>-<n>").
    var requests: UInt32 = 0
}

/// Socket cookie → `SocketState`, bounded, forgetting the least recently seen.
///
/// Every connect with SYN retransmits and every socket carrying a request lands
/// here: open addressing with linear probing over a flat array, a multiplicative
/// hash of the cookie (the kernel hands cookies out from a counter; nobody picks
/// them), no deletion. Recency is kept by two generations: sockets are added to
/// and, when seen again, moved into `recent`; when `recent` holds half the limit,
/// the `older` generation is forgotten (all but the sockets `keep` names) and
/// `recent` becomes `older`. So between half the limit and the limit are
/// remembered, and what goes is always the half seen longest ago.
struct SocketTable: Sendable {
    private var recent = Generation()
    private var older = Generation()
    let limit: Int

    init(limit: Int) { self.limit = max(2, limit) }

    var count: Int { recent.count + older.count }

    /// The state of `cookie`, if remembered. Does not count as seeing it.
    func peek(_ cookie: UInt64) -> SocketState? {
        if let i = recent.find(cookie).found { return recent.entries[i].state }
        if let i = older.find(cookie).found { return older.entries[i].state }
        return nil
    }

    /// Sees `cookie` (it becomes most recent) and lets `body` read or change its
    /// state, which starts as `SocketState()` for a socket not remembered.
    /// Making room forgets the older generation except sockets `keep` returns true
    /// for; returns how many were forgotten.
    @discardableResult
    mutating func update(_ cookie: UInt64, keep: (UInt64) -> Bool,
                         _ body: (inout SocketState) -> Void) -> Int {
        precondition(cookie != 0, "cookie 0 marks an empty slot")
        let probe = recent.find(cookie)
        if let i = probe.found {
            body(&recent.entries[i].state)
            return 0
        }
        var state = SocketState()
        if let i = older.find(cookie).found { state = older.entries[i].state; older.remove(at: i) }
        body(&state)
        return insertRecent(cookie, state, at: probe.slot, keep: keep)
    }

    /// Sees `cookie` with a state that replaces whatever was remembered (a new
    /// connection on it). Touches one slot of `recent`: an entry for the same
    /// cookie in `older` is shadowed by this one and goes with its generation
    /// (counted as forgotten then: a connected socket connecting again is rare).
    @discardableResult
    mutating func replace(_ cookie: UInt64, with state: SocketState, keep: (UInt64) -> Bool) -> Int {
        precondition(cookie != 0, "cookie 0 marks an empty slot")
        let probe = recent.find(cookie)
        if let i = probe.found {
            recent.entries[i].state = state
            return 0
        }
        return insertRecent(cookie, state, at: probe.slot, keep: keep)
    }

    /// Forgets `cookie` if remembered (a new connection on it that needs no state).
    mutating func forget(_ cookie: UInt64) {
        if let i = recent.find(cookie).found { recent.remove(at: i) }
        if let i = older.find(cookie).found { older.remove(at: i) }
    }

    /// Adds a cookie not in `recent` at `slot` (from `find`), rotating first if
    /// `recent` holds half the limit; returns how many the rotation forgot.
    private mutating func insertRecent(_ cookie: UInt64, _ state: SocketState, at slot: Int,
                                       keep: (UInt64) -> Bool) -> Int {
        var slot = slot
        var forgotten = 0
        if recent.count >= limit / 2 {
            forgotten = rotate(keep: keep)
            slot = recent.find(cookie).slot
        }
        recent.insert(cookie, state, at: slot)
        return forgotten
    }

    /// Forgets `older` but for what `keep` names, which moves to `recent`; `recent` becomes `older`.
    private mutating func rotate(keep: (UInt64) -> Bool) -> Int {
        var forgotten = 0
        var kept: [(UInt64, SocketState)] = []
        older.forEach { cookie, state in
            guard keep(cookie) else { forgotten += 1; return }
            // Kept unless a newer entry in `recent` shadows it (a socket connected anew).
            if recent.find(cookie).found == nil { kept.append((cookie, state)) }
        }
        swap(&recent, &older)
        recent.removeAll()
        for (cookie, state) in kept { recent.insert(cookie, state, at: recent.find(cookie).slot) }
        return forgotten
    }
}

/// One generation: a power-of-two array of slots, at most half full; a slot holds
/// the cookie and its state together (one cache line per lookup).
private struct Generation: Sendable {
    struct Entry: Sendable {
        /// 0: empty.
        var cookie: UInt64 = 0
        var state = SocketState()
    }

    fileprivate(set) var entries: [Entry] = []
    private(set) var count = 0
    private var shift = 64

    /// Runs of 8 consecutive cookies share a hashed group of 8 adjacent slots: the
    /// kernel hands cookies out from a counter, so sockets made one after another
    /// land side by side in memory (a cache line holds two slots), while groups
    /// spread over the table by a multiplicative hash.
    private func home(_ cookie: UInt64) -> Int {
        let group = Int(truncatingIfNeeded: ((cookie >> 3) &* 0x9E37_79B9_7F4A_7C15) >> UInt64(shift + 3))
        return group << 3 | Int(truncatingIfNeeded: cookie & 7)
    }

    /// Where `cookie` is, or the empty slot where it would go.
    func find(_ cookie: UInt64) -> (found: Int?, slot: Int) {
        guard !entries.isEmpty else { return (nil, -1) }
        let mask = entries.count - 1
        var i = home(cookie)
        return entries.withUnsafeBufferPointer { slots in
            while true {
                let c = slots[i].cookie
                if c == cookie { return (i, i) }
                if c == 0 { return (nil, i) }
                i = (i + 1) & mask
            }
        }
    }

    /// Inserts at `slot` from `find` (growing first if that would pass half full).
    mutating func insert(_ cookie: UInt64, _ state: SocketState, at slot: Int) {
        var slot = slot
        if slot < 0 || (count + 1) * 2 > entries.count {
            grow()
            slot = find(cookie).slot
        }
        entries[slot] = Entry(cookie: cookie, state: state)
        count += 1
    }

    /// Removal with backward shift, so probes never need tombstones.
    mutating func remove(at slot: Int) {
        let mask = entries.count - 1
        var hole = slot
        var i = (slot + 1) & mask
        while entries[i].cookie != 0 {
            // Move i into the hole unless its home lies cyclically in (hole, i].
            if (i - home(entries[i].cookie)) & mask >= (i - hole) & mask {
                entries[hole] = entries[i]
                hole = i
            }
            i = (i + 1) & mask
        }
        entries[hole] = Entry()
        count -= 1
    }

    func forEach(_ body: (UInt64, SocketState) -> Void) {
        for e in entries where e.cookie != 0 { body(e.cookie, e.state) }
    }

    /// Empties the generation, keeping its storage.
    mutating func removeAll() {
        guard count > 0 else { return }
        for i in entries.indices { entries[i].cookie = 0 }
        count = 0
    }

    private mutating func grow() {
        let capacity = max(64, entries.count * 2)
        let old = entries
        entries = [Entry](repeating: Entry(), count: capacity)
        shift = 64 - capacity.trailingZeroBitCount
        count = 0
        for e in old where e.cookie != 0 { insert(e.cookie, e.state, at: find(e.cookie).slot) }
    }
}
