package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCounter reads how many commands a Redis server has run, so that
// the round trips the servers under test make to it can be counted over
// the measured window. A nil *redisCounter counts nothing.
type redisCounter struct {
	rdb *redis.Client
}

// newRedisCounter connects to the Redis server at addr, or returns nil
// when addr is empty.
func newRedisCounter(addr string) *redisCounter {
	if addr == "" {
		return nil
	}
	return &redisCounter{rdb: redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})}
}

// redisStats is what a Redis server has run since its statistics were
// last reset, leaving out INFO itself (this counter's own calls).
type redisStats struct {
	// Calls counts every command, those that scripts run included:
	// INFO commandstats does not tell them apart.
	Calls int64
	// Scripts counts EVAL, EVALSHA and FCALL, each one round trip that
	// runs many commands.
	Scripts int64
}

// stats reads the server's INFO commandstats.
func (c *redisCounter) stats(ctx context.Context) (redisStats, error) {
	if c == nil {
		return redisStats{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := c.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return redisStats{}, fmt.Errorf("loadgen: --redis %s: INFO commandstats: %w", c.rdb.Options().Addr, err)
	}
	return parseCommandStats(info)
}

// close releases the connection.
func (c *redisCounter) close() {
	if c != nil {
		c.rdb.Close()
	}
}

// parseCommandStats sums the calls= fields of INFO commandstats lines
// ("cmdstat_evalsha:calls=12,usec=34,..."), except INFO's own.
func parseCommandStats(info string) (redisStats, error) {
	var st redisStats
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, fields, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			v, ok := strings.CutPrefix(f, "calls=")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return redisStats{}, fmt.Errorf("loadgen: INFO commandstats: %s: calls %q is not a count", name, v)
			}
			st.Calls += n
			switch strings.TrimPrefix(name, "cmdstat_") {
			case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
				st.Scripts += n
			}
		}
	}
	return st, nil
}
