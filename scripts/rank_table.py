"""Check an HCCL rank table (version 1.0) and list the ranks this server runs.

    python scripts/rank_table.py RANK_TABLE_FILE [--server_id ID] [--rank_size]

Prints one "RANK_ID DEVICE_ID" line per device of this server, in rank order, or with
--rank_size the number of devices of all servers together (RANK_SIZE). This server is
the only one listed, else the one whose server_id is --server_id (default: the SERVER_ID
environment variable), else the one whose server_id is an address of this host. The
table format is described in src/launch/rank_table.py and README.md ("Training").

Exit status: 0, or 1 with one "error:" line naming the file and the field at fault.
"""
import argparse
import os

from src.cli import ArgumentParser, run_main
from src.launch.rank_table import local_ranks, local_server, rank_size, read_rank_table


def main(argv=None):
    """Print the local ranks (or RANK_SIZE) of the rank table the command line ``argv`` names."""
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("rank_table", help="HCCL rank table JSON file")
    parser.add_argument("--server_id", default=os.environ.get("SERVER_ID", ""),
                        help="server_id of this host in the table (default: $SERVER_ID, else found by address)")
    parser.add_argument("--rank_size", action="store_true", help="print RANK_SIZE instead of the local ranks")
    arguments = parser.parse_args(argv)
    servers = read_rank_table(arguments.rank_table)
    if arguments.rank_size:
        print(rank_size(servers))
        return
    for rank_id, device_id in local_ranks(local_server(servers, arguments.rank_table, arguments.server_id)):
        print(rank_id, device_id)


if __name__ == "__main__":
    run_main(main)
