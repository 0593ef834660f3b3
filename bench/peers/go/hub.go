// A room server in the pattern of gorilla/websocket's examples/chat (its
// best-known example): one Hub goroutine per room with register, unregister
// and broadcast channels, and per client a read pump and a write pump fed by
// a buffered channel. A connection's room is its request path (without the
// query), as with `ricochet serve --reply room`; every data message goes to
// every member, the sender included, with its type (text or binary) kept.
//
// Two departures from the example, both in gorilla's favour or needed for the
// rooms' semantics:
//   - a message is encoded once for all its receivers with gorilla's
//     PreparedMessage (the example sends raw bytes, encoded per receiver);
//   - a message stays its own frame: the example joins queued messages with
//     newlines into one frame, which would change what members receive.
//
// The slow-client policy is the example's: a member whose send buffer is full
// is dropped (its connection closed). The buffer holds 4,096 messages, the
// tokio-tungstenite peer's channel capacity; the example's 256 closes members
// in the lock-step point with 500 members, where each receives 500 messages
// a round. `ricochet bench` reports a dropped member as missing messages.
//
// `make bench` builds it like echo.go, in GOPATH mode against Debian's
// golang-github-gorilla-websocket-dev, and runs it with GOMAXPROCS=1.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/gorilla/websocket"
)

// sendBuffer is the messages a member may have waiting before it is dropped.
const sendBuffer = 4096

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
}

type hub struct {
	path       string
	clients    map[*client]bool
	broadcast  chan *websocket.PreparedMessage
	register   chan *client
	unregister chan *client
}

// rooms maps a path to its hub; a hub leaves it when its last member does.
var (
	roomsMu sync.Mutex
	rooms   = map[string]*hub{}
)

// join registers a new member with the hub of path, starting one if the
// room is new. It runs before the upgrade's 101 is sent, so a client that
// has its 101 is a member and misses nothing published after it (as with
// Ricochet; `ricochet bench` relies on it). Registration happens under
// roomsMu so that a hub closing its last member out cannot race a newcomer
// into a hub that has stopped.
func join(path string) *client {
	roomsMu.Lock()
	defer roomsMu.Unlock()
	h, ok := rooms[path]
	if !ok {
		h = &hub{
			path:       path,
			clients:    map[*client]bool{},
			broadcast:  make(chan *websocket.PreparedMessage),
			register:   make(chan *client),
			unregister: make(chan *client),
		}
		rooms[path] = h
		go h.run()
	}
	c := &client{hub: h, send: make(chan *websocket.PreparedMessage, sendBuffer)}
	h.register <- c
	return c
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
			if len(h.clients) == 0 && h.leave() {
				return
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default:
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

// leave removes an empty hub from rooms; false if a member is joining (it
// holds roomsMu and waits on register), in which case the hub stays.
func (h *hub) leave() bool {
	if !roomsMu.TryLock() {
		return false
	}
	defer roomsMu.Unlock()
	delete(rooms, h.path)
	return true
}

func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	for {
		mt, message, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		pm, err := websocket.NewPreparedMessage(mt, message)
		if err != nil {
			return
		}
		c.hub.broadcast <- pm
	}
}

func (c *client) writePump() {
	defer c.conn.Close()
	for m := range c.send {
		if err := c.conn.WritePreparedMessage(m); err != nil {
			break
		}
	}
	// Drain so that the hub never blocks on a member that is gone.
	for range c.send {
	}
}

func serve(w http.ResponseWriter, r *http.Request) {
	c := join(r.URL.Path)
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		c.hub.unregister <- c
		return
	}
	// What was queued for c before this point waits in c.send.
	c.conn = conn
	go c.writePump()
	c.readPump()
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	http.Serve(ln, http.HandlerFunc(serve))
}
