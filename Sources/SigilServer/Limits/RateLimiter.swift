import SigilPosix

/// A listener's limit on signing per caller uid: a token bucket of `burst` tokens refilled at
/// `perSecond`. Each signature costs one token (a batch costs one per item).
public struct RateLimit: Sendable, Equatable {
    public var perSecond: Double
    public var burst: Int

    public init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// The token buckets of every (listener, uid) pair, shared by all loops. Checked from the frame
/// header alone, before a body is parsed, so a caller over its limit costs us almost nothing.
final class RateLimiter: Sendable {
    private struct Key: Hashable {
        let listener: Int
        let uid: UInt32
    }

    private struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    private let buckets = Locked<[Key: Bucket]>([:])
    /// Buckets kept before full ones are forgotten (a full bucket is the same as no bucket).
    private static let maxBuckets = 4096

    /// Takes `cost` tokens for `uid` on `listener` at `now` (milliseconds, monotonic); false when
    /// there are not enough (nothing is taken then).
    func take(_ cost: Int, listener: Int, uid: UInt32, limit: RateLimit, now: UInt64) -> Bool {
        let key = Key(listener: listener, uid: uid)
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit.burst), updated: now)
            if now > bucket.updated {
                bucket.tokens = min(Double(limit.burst), bucket.tokens + Double(now - bucket.updated) * limit.perSecond / 1000)
                bucket.updated = now
            }
            let allowed = bucket.tokens >= Double(cost)
            if allowed { bucket.tokens -= Double(cost) }
            if buckets.count >= RateLimiter.maxBuckets && buckets[key] == nil {
                // Forget callers that are back to a full bucket: they lose nothing.
                buckets = buckets.filter { _, other in
                    other.tokens + Double(now &- other.updated) * limit.perSecond / 1000 < Double(limit.burst)
                }
            }
            buckets[key] = bucket
            return allowed
        }
    }
}
