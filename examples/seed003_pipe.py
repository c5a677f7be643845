"""Seed 003, "Communicating": request / response over a Pipe until "close"."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import gilfree as multiprocessing  # was: import multiprocessing


def worker(conn):
    """A function that runs in a separate process."""
    while True:
        message = conn.recv()
        if message == "close":
            break
        print(f"Worker received message: {message}", flush=True)
        conn.send(f"Processed: {message}")
    print("Worker closing", flush=True)


if __name__ == '__main__':
    parent_conn, child_conn = multiprocessing.Pipe()

    # Start the worker process
    process = multiprocessing.Process(target=worker, args=(child_conn,))
    process.start()

    # Send messages to the worker process
    for message in ["hello", "world", "close"]:
        parent_conn.send(message)
        if message != "close":
            response = parent_conn.recv()
            print(f"Parent received response: {response}", flush=True)

    # Wait for the worker process to finish
    process.join()
