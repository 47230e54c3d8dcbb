// Command swarm is the CLI of swarm, the peer-to-peer release distribution
// daemon: it runs the seeder and agent daemons, publishes releases and shows
// cluster status. main only calls Main; commands live one per file.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
