"""`cbdc wallet --bank URL`: the terminal wallet's command line."""

from __future__ import annotations

import argparse

from wallet_tui.app import WalletApp


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbdc wallet",
                                     description="The terminal e-CNY wallet.")
    parser.add_argument("--bank", required=True, metavar="URL",
                        help="the wallet API of your bank, e.g. http://127.0.0.1:8001")
    parser.add_argument("--profile", help="the profile to unlock (or create)")
    parser.add_argument("--keystore", metavar="DIR",
                        help="folder of encrypted profiles (default ~/.cbdc-wallet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    WalletApp(args.bank, keystore_dir=args.keystore, profile=args.profile).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
