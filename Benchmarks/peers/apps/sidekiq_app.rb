# Sidekiq jobs for the peers comparison: the same three bodies as apps/common.py.
require "sidekiq"
require "redis"

PREFIX = ENV.fetch("PEER_PREFIX", "peer")
IO_SECONDS = ENV.fetch("PEER_IO_SECONDS", "0.2").to_f
COUNTER = Redis.new(url: ENV.fetch("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))
COUNTER_LOCK = Mutex.new

Sidekiq.configure_server do |config|
  config.redis = { url: ENV.fetch("PEER_REDIS_URL") }
  # Quiet, as Sidekiq's own load test runs it; PEER_SIDEKIQ_LOG_LEVEL=INFO is its default (a line
  # per job started and done).
  config.logger.level = Logger.const_get(ENV.fetch("PEER_SIDEKIQ_LOG_LEVEL", "WARN"))
end

def peer_done
  COUNTER_LOCK.synchronize { COUNTER.incr("#{PREFIX}:done") }
end

class NoopJob
  include Sidekiq::Worker
  sidekiq_options retry: false
  def perform; peer_done; end
end

class LatJob
  include Sidekiq::Worker
  sidekiq_options retry: false
  def perform(t)
    started = Time.now.to_f
    COUNTER_LOCK.synchronize { COUNTER.rpush("#{PREFIX}:lat", format("%.3f", (started - t.to_f) * 1000)) }
    peer_done
  end
end

class IoJob
  include Sidekiq::Worker
  sidekiq_options retry: false
  def perform; sleep IO_SECONDS; peer_done; end
end
