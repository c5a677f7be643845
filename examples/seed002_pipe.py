"""Seed 002, "Pipes": a child sends a list through a Pipe."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from gilfree import Process, Pipe  # was: from multiprocessing import Process, Pipe


def f(conn):
    conn.send([42, None, 'hello'])
    conn.close()


if __name__ == '__main__':
    parent_conn, child_conn = Pipe()
    p = Process(target=f, args=(child_conn,))
    p.start()
    print(parent_conn.recv())    # prints "[42, None, 'hello']"
    p.join()
