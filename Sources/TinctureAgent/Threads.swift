import Glibc

/// A started OS thread. Blocking C loops (ring-buffer poll, accept, blocking
/// writes) run on these, never on the Swift concurrency pool.
final class OSThread {
    private var handle = pthread_t()
    private var joined = false

    private final class Box {
        let name: String
        let body: () -> Void
        init(_ name: String, _ body: @escaping () -> Void) { self.name = name; self.body = body }
    }

    init(name: String, _ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        let rc = pthread_create(&handle, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed for \(name): \(rc)")
    }

    func join() {
        guard !joined else { return }
        joined = true
        pthread_join(handle, nil)
    }

    /// Let the thread end on its own; its resources are freed when it does.
    func detach() {
        guard !joined else { return }
        joined = true
        pthread_detach(handle)
    }
}

/// A bounded FIFO for one slow consumer: pushing never blocks; when full the
/// oldest element is dropped and counted. `pop` blocks until an element or close.
final class BoundedQueue<Element>: @unchecked Sendable {
    // @unchecked: every field is read and written only while `mutex` is held.
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var ring: [Element?]
    private var head = 0
    private var count = 0
    private var closed = false
    private(set) var dropped: UInt64 = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        ring = Array(repeating: nil, count: capacity)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// Returns false when the queue was full and its oldest element was dropped.
    @discardableResult
    func push(_ element: Element) -> Bool {
        let kept: Bool = locked {
            if closed { return true }
            var keptAll = true
            if count == ring.count {
                head = (head + 1) % ring.count
                count -= 1
                dropped += 1
                keptAll = false
            }
            ring[(head + count) % ring.count] = element
            count += 1
            return keptAll
        }
        pthread_cond_signal(&cond)
        return kept
    }

    /// Every waiting element (at least one, up to `limit`), oldest first, or empty
    /// once closed (pending elements are discarded): a consumer that writes in batches makes one syscall per burst.
    func popBatch(limit: Int) -> [Element] {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while count == 0 && !closed { pthread_cond_wait(&cond, &mutex) }
        if closed { return [] }
        let n = min(count, max(limit, 1))
        var batch: [Element] = []
        batch.reserveCapacity(n)
        for _ in 0..<n {
            batch.append(ring[head]!)
            ring[head] = nil
            head = (head + 1) % ring.count
        }
        count -= n
        return batch
    }

    func close() {
        locked { closed = true }
        pthread_cond_broadcast(&cond)
    }

    var droppedCount: UInt64 { locked { dropped } }
}
