package qmp

// busy: a command holds the turn.
func (c *Client) busy() bool { return len(c.turn) == 1 }
