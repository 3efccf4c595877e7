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

    let path: String
    private let listener: Listener
    private let queueCapacity: Int
    private let hello: () -> String
    private let state = Mutex<(subscribers: [ObjectIdentifier: Subscriber], departedDrops: UInt64)>(([:], 0))
    private let subscriberCount = Atomic<Int>(0)

    init(path: String, queueCapacity: Int, hello: @escaping () -> String) throws {
        self.path = path
        self.queueCapacity = queueCapacity
        self.hello = hello
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

    /// A new subscriber: greeted, queued, given its writer thread; refused past the limit.
    private func admit(_ fd: Int32) {
        if state.withLock({ $0.subscribers.count }) >= Self.maxSubscribers {
            _ = Sockets.writeAll(fd, "{\"kind\":\"error\",\"message\":\"too many subscribers (\(Self.maxSubscribers))\"}\n")
            close(fd)
            return
        }
        let sub = Subscriber(fd: fd, capacity: queueCapacity)
        sub.queue.push(hello())
        state.withLock { $0.subscribers[ObjectIdentifier(sub)] = sub }
        subscriberCount.add(1, ordering: .relaxed)
        OSThread(name: "tn-sub-writer") { [self] in
            write(to: sub)
        }.detach()
    }

    private func write(to sub: Subscriber) {
        // A subscriber that stops reading blocks only this thread, up to the send
        // timeout; meanwhile its queue drops its oldest events.
        Sockets.setTimeouts(sub.fd, seconds: 10)
        while let line = sub.queue.pop() {
            if !Sockets.writeAll(sub.fd, line) { break }
        }
        sub.queue.close()
        state.withLock { s in
            s.subscribers[ObjectIdentifier(sub)] = nil
            s.departedDrops += sub.queue.droppedCount
        }
        subscriberCount.subtract(1, ordering: .relaxed)
        close(sub.fd)
    }
}
