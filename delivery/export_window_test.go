package delivery

// Window is how many outbox records a dispatcher holds in memory at most.
const Window = window
