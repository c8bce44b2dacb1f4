"""tenfold.batch"""
