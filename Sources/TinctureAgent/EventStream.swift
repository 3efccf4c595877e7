import Glibc
import Synchronization
import TinctureCore

/// Serves the live event stream on a unix socket (mode 0600): one JSON object per
/// line. Each subscriber has its own bounded queue and writer thread, so a slow or
/// dead `tincture tail` loses its own oldest events (counted) and never slows the
/// reader.
final class EventStream: @unchecked Sendable {
    // @unchecked: `subscribers` and `departedDrops` live inside a Mutex; the rest is
    // set once in init.
    final class Subscriber: @unchecked Sendable {
        // @unchecked: `fd` is only written to by the writer thread; the queue locks itself.
        let fd: Int32
        let queue: BoundedQueue<String>
        init(fd: Int32, capacity: Int) {
            self.fd = fd
            queue = BoundedQueue(capacity: capacity)
        }
    }

    static let maxSubscribers = 16
    static let writeBatchBytes = 64 * 1024

    let path: String
    private let listener: Listener
    private let queueCapacity: Int
    private let hello: () -> String
    private let explain: (String) -> [String]
    /// Told the number of subscribers whenever it changes, under the stream's lock
    /// (so calls arrive in order), before a new subscriber's greeting goes out.
    private let subscribersChanged: (Int) -> Void
    private let state = Mutex<(subscribers: [ObjectIdentifier: Subscriber], departedDrops: UInt64)>(([:], 0))
    private let subscriberCount = Atomic<Int>(0)

    init(path: String, queueCapacity: Int, hello: @escaping () -> String,
         subscribersChanged: @escaping (Int) -> Void = { _ in },
         explain: @escaping (String) -> [String]) throws {
        self.path = path
        self.subscribersChanged = subscribersChanged
        self.queueCapacity = queueCapacity
        self.hello = hello
        self.explain = explain
        listener = Listener(fd: try Sockets.listenUnix(path))
    }

    func start() {
        listener.start(name: "tn-events") { [self] fd in admit(fd) }
    }

    /// Cheap check for the reader: skip JSON encoding when nobody listens.
    var hasSubscribers: Bool { subscriberCount.load(ordering: .relaxed) > 0 }

    /// (connected now, events dropped for slow subscribers since start).
    var stats: (subscribers: Int, dropped: UInt64) {
        state.withLock { s in
            (s.subscribers.count, s.departedDrops + s.subscribers.values.reduce(0) { $0 + $1.queue.droppedCount })
        }
    }

    func publish(_ line: String) {
        state.withLock { s in
            for sub in s.subscribers.values { sub.queue.push(line) }
        }
    }

    func stop() {
        listener.stop()
        unlink(path)
        state.withLock { s in
            for sub in s.subscribers.values {
                sub.queue.close()
                shutdown(sub.fd, Int32(SHUT_RDWR))
            }
        }
    }

    /// A new client. Its first line says what it wants: `subscribe` (the live stream)
    /// or `explain ID` (the stored records of a request, then close). A client that
    /// says nothing within a moment is a subscriber.
    private func admit(_ fd: Int32) {
        OSThread(name: "tn-sub-writer") { [self] in
            switch Self.readCommand(fd) {
            case .explain(let id):
                Sockets.setTimeouts(fd, seconds: 10)
                for line in explain(id) where !Sockets.writeAll(fd, line) { break }
                close(fd)
            case .subscribe:
                subscribe(fd)
            }
        }.detach()
    }

    enum Command: Equatable { case subscribe, explain(String) }

    static let commandTimeoutMs: Int32 = 2000

    /// The client's first line, read with a timeout; anything unreadable means subscribe.
    static func readCommand(_ fd: Int32) -> Command {
        var line = [UInt8]()
        var byte: UInt8 = 0
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while line.count < 512 {
            guard poll(&pfd, 1, commandTimeoutMs) == 1, read(fd, &byte, 1) == 1 else { break }
            if byte == 10 { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingSpaces()
        if text.hasPrefix("explain ") {
            let id = String(text.dropFirst("explain ".count)).trimmingSpaces()
            if !id.isEmpty { return .explain(id) }
        }
        return .subscribe
    }

    private func subscribe(_ fd: Int32) {
        if state.withLock({ $0.subscribers.count }) >= Self.maxSubscribers {
            _ = Sockets.writeAll(fd, "{\"kind\":\"error\",\"message\":\"too many subscribers (\(Self.maxSubscribers))\"}\n")
            close(fd)
            return
        }
        let sub = Subscriber(fd: fd, capacity: queueCapacity)
        sub.queue.push(hello())
        state.withLock { s in
            s.subscribers[ObjectIdentifier(sub)] = sub
            subscribersChanged(s.subscribers.count)
        }
        subscriberCount.add(1, ordering: .relaxed)
        write(to: sub)
    }

    private func write(to sub: Subscriber) {
        // A subscriber that stops reading blocks only this thread, up to the send
        // timeout; meanwhile its queue drops its oldest events.
        // Lines waiting together go out in one write: a burst costs the agent a few
        // syscalls, not one per event, and the subscriber keeps up.
        Sockets.setTimeouts(sub.fd, seconds: 10)
        var buffer = ""
        buffer.reserveCapacity(Self.writeBatchBytes)
        while true {
            let lines = sub.queue.popBatch(limit: 256)
            if lines.isEmpty { break }
            buffer.removeAll(keepingCapacity: true)
            var ok = true
            for line in lines {
                buffer += line
                if buffer.utf8.count >= Self.writeBatchBytes {
                    ok = Sockets.writeAll(sub.fd, buffer)
                    buffer.removeAll(keepingCapacity: true)
                    if !ok { break }
                }
            }
            if !ok || (!buffer.isEmpty && !Sockets.writeAll(sub.fd, buffer)) { break }
        }
        sub.queue.close()
        state.withLock { s in
            s.subscribers[ObjectIdentifier(sub)] = nil
            s.departedDrops += sub.queue.droppedCount
            subscribersChanged(s.subscribers.count)
        }
        subscriberCount.subtract(1, ordering: .relaxed)
        close(sub.fd)
    }
}
