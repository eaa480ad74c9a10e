// Package freeport hands tests loopback ports for child processes to
// listen on (the quotagate binary, redis-server, PostgreSQL): ports that
// are free when handed out and that the kernel will not give to anything
// else meanwhile. It uses only the standard library, so that the deploy
// module's tests can use it without taking on the server's dependencies.
package freeport
