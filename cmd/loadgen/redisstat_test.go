package main

import (
	"context"
	"testing"

	"github.com/quotagate/quotagate/store/redis/redistest"
)

// TestRedisCounter runs a real redis-server on loopback and checks that a
// script call counts as one script and as every command it runs.
func TestRedisCounter(t *testing.T) {
	srv := redistest.StartServer(t)
	addr := srv.Addr
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	// Connect first, so that the connection's handshake is not counted
	// with the script.
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	rc := newRedisCounter(addr)
	t.Cleanup(rc.close)
	before, err := rc.stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Eval(ctx, "redis.call('SET', KEYS[1], '1'); return redis.call('GET', KEYS[1])", []string{"k"}).Err(); err != nil {
		t.Fatal(err)
	}
	after, err := rc.stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := (redisStats{Calls: after.Calls - before.Calls, Scripts: after.Scripts - before.Scripts}); got != (redisStats{Calls: 3, Scripts: 1}) {
		t.Errorf("one EVAL running SET and GET counted as %+v, want 3 calls, 1 script", got)
	}
}

func TestParseCommandStats(t *testing.T) {
	tests := []struct {
		name    string
		info    string
		want    redisStats
		wantErr bool
	}{
		{name: "empty", info: "# Commandstats\r\n"},
		{
			name: "sums all but info",
			info: "# Commandstats\r\ncmdstat_evalsha:calls=120,usec=900,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n" +
				"cmdstat_info:calls=4,usec=80,usec_per_call=20.00\r\ncmdstat_hgetall:calls=7,usec=10,usec_per_call=1.43\r\n",
			want: redisStats{Calls: 127, Scripts: 120},
		},
		{name: "bad count", info: "cmdstat_get:calls=x,usec=1\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCommandStats(tt.info)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseCommandStats = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
